"""Checks on a COCO annotation file before pycocotools reads it, so that bad input stops with
the file, the record and the problem named, instead of a KeyError deep inside a worker.

What COCO training code skips (boxes with no area, non-finite or wholly outside the image)
is skipped here too and counted in one warning; what it cannot run with is an error.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path


class DataError(ValueError):
    """A data set file that cannot be used; the message names the file, record and problem."""


REQUIRED = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id",),
}


def _records(data: dict, key: str, path: Path) -> list[dict]:
    records = data.get(key)
    if not isinstance(records, list):
        raise DataError(f"{path}: no '{key}' list (a COCO annotation file has 'images', "
                        "'annotations' and 'categories')")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: {key}[{i}] is not an object")
        missing = [k for k in REQUIRED[key] if k not in rec]
        if missing:
            raise DataError(f"{path}: {key}[{i}] (id {rec.get('id', '?')}) lacks {missing}")
    return records


def _usable_box(ann: dict, image: dict, path: Path) -> bool:
    """Whether an annotation's box has a finite, positive area inside its image."""
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, (int, float)) for v in bbox)):
        raise DataError(f"{path}: annotation {ann['id']} has bbox {bbox!r}; expected [x, y, w, h]")
    x, y, w, h = bbox
    if not all(math.isfinite(v) for v in bbox) or w <= 0 or h <= 0:
        return False
    return min(x + w, image["width"]) > max(x, 0) and min(y + h, image["height"]) > max(y, 0)


def read_annotations(path: Path) -> dict:
    """The parsed, checked annotation file, with unusable boxes removed (and counted)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: the top level is not a JSON object")
    images = _records(data, "images", path)
    annotations = _records(data, "annotations", path)
    categories = _records(data, "categories", path)
    if not images:
        raise DataError(f"{path}: the image list is empty")
    if not categories:
        raise DataError(f"{path}: the category list is empty")
    image_of = {img["id"]: img for img in images}
    if len(image_of) != len(images):
        raise DataError(f"{path}: image ids are not unique")
    category_ids = {c["id"] for c in categories}
    kept, skipped = [], []
    for ann in annotations:
        if ann["image_id"] not in image_of:
            raise DataError(f"{path}: annotation {ann['id']} refers to image {ann['image_id']}, "
                            "which is not in 'images'")
        if ann["category_id"] not in category_ids:
            raise DataError(f"{path}: annotation {ann['id']} has category_id {ann['category_id']}, "
                            f"which is not in 'categories' ({sorted(category_ids)})")
        if _usable_box(ann, image_of[ann["image_id"]], path):
            kept.append({"area": ann["bbox"][2] * ann["bbox"][3], "iscrowd": 0, **ann})
        else:
            skipped.append(ann["id"])
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} annotation(s) whose box is empty, not "
                      f"finite or outside its image (ids {skipped[:10]}"
                      f"{' ...' if len(skipped) > 10 else ''})", stacklevel=2)
    return {**data, "annotations": kept}
