"""The embedded data set: generated COCO-format images where a small off-centre part names the class.

Every object is a textured body (an ellipse whose colour and aspect say nothing about the
class) with a small "head" at one end whose shape is the class, as the bird's head in the
paper's Fig. 1: the most discriminative location is off the centre, while the box extent is
best judged from the body. Scales run from small to large; objects occlude each other;
distractor blobs and textured backgrounds add clutter. Everything is a pure function of the
seed, so two machines write the same files.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mlc.util.io import atomic_write_text
from mlc.util.lock import file_lock

HEAD_SHAPES = ("disc", "square", "triangle", "cross", "diamond", "bar")
# Head colours of spec.head_colour == "class": one saturated hue per class, far apart in RGB.
HEAD_COLOURS = ((230, 40, 40), (40, 200, 60), (50, 80, 240), (240, 220, 30), (220, 50, 220),
                (30, 220, 230))


@dataclass(frozen=True)
class ShapesSpec:
    """Parameters of a generated set; the defaults are the `shapes` scale."""

    num_train: int = 1000
    num_val: int = 200
    image_size: int = 96
    num_classes: int = 4
    min_objects: int = 1
    max_objects: int = 5
    min_size: float = 14.0
    max_size: float = 48.0
    head_offset: float = 0.7  # the head's centre, from the body's centre (0) to its tip (1)
    head_scale: float = 0.45  # the head's radius over the body's half length
    max_occlusion: float = 0.35
    distractors: int = 3
    head_colour: str = "class"  # "class": each class's head has its own hue; "random"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.num_classes <= len(HEAD_SHAPES):
            raise ValueError(f"num_classes must be 1..{len(HEAD_SHAPES)}, got {self.num_classes}")
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError("num_train and num_val must be at least 1")
        if not 0 <= self.head_offset <= 1:
            raise ValueError(f"head_offset must be in [0, 1], got {self.head_offset}")
        if self.head_colour not in ("random", "class"):
            raise ValueError(f"head_colour must be 'random' or 'class', got {self.head_colour!r}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background: a colour gradient, low-frequency noise and faint stripes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    t = (xx * math.cos(rng.uniform(0, math.pi)) + yy * math.sin(rng.uniform(0, math.pi)))[..., None]
    img = c0 * (1 - t) + c1 * t
    coarse = rng.normal(0, 18, (size // 8 + 1, size // 8 + 1, 3))
    img += np.kron(coarse, np.ones((8, 8, 1)))[:size, :size]
    period = rng.uniform(6, 20)
    img += 10 * np.sin(2 * math.pi * (xx * rng.uniform(-1, 1) + yy) * size / period)[..., None]
    img += rng.normal(0, 6, img.shape)
    return img


def _ellipse_polygon(cx: float, cy: float, a: float, b: float, angle: float, n: int = 40):
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + x * ca - y * sa, cy + x * sa + y * ca], axis=1)


def _head_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """The class-defining part, a polygon of radius r around (cx, cy)."""
    if kind == "disc":
        return _ellipse_polygon(cx, cy, r, r, 0.0, 24)
    if kind == "square":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * r * 0.85
    elif kind == "triangle":
        pts = np.array([[math.cos(a), math.sin(a)] for a in (0, 2.094, 4.189)]) * r * 1.1
    elif kind == "diamond":
        pts = np.array([[1, 0], [0, 0.6], [-1, 0], [0, -0.6]]) * r * 1.1
    elif kind == "bar":
        pts = np.array([[-1, -0.3], [1, -0.3], [1, 0.3], [-1, 0.3]]) * r
    else:  # cross
        w = 0.35
        pts = np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1],
                        [-w, w], [-1, w], [-1, -w], [-w, -w]]) * r
    ca, sa = math.cos(angle), math.sin(angle)
    rot = np.array([[ca, -sa], [sa, ca]])
    return pts @ rot.T + np.array([cx, cy])


def _mask(size: int, polygons: list[np.ndarray]) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        draw.polygon([tuple(p) for p in poly], fill=255)
    return np.asarray(canvas) > 0


def _sample_object(rng: np.random.Generator, spec: ShapesSpec, label: int):
    """Body and head polygons of one object, or None if it does not fit in the image."""
    size = spec.image_size
    extent = math.exp(rng.uniform(math.log(spec.min_size), math.log(spec.max_size)))
    a = extent / 2
    b = a * rng.uniform(0.35, 0.7)
    angle = rng.uniform(0, 2 * math.pi)
    r = max(2.5, spec.head_scale * a)
    # The head sits along the major axis, head_offset of the way from the centre to the tip.
    d = spec.head_offset * a
    margin = a + r
    if 2 * margin >= size:
        return None
    cx, cy = rng.uniform(margin * 0.6, size - margin * 0.6, 2)
    body = _ellipse_polygon(cx, cy, a, b, angle)
    hx, hy = cx + d * math.cos(angle), cy + d * math.sin(angle)
    head = _head_polygon(HEAD_SHAPES[label], hx, hy, r, rng.uniform(0, 2 * math.pi))
    return body, head


def render_image(spec: ShapesSpec, split: str, index: int) -> tuple[np.ndarray, list[dict]]:
    """One image (H, W, 3 uint8) and its annotations, a pure function of (spec, split, index)."""
    split_key = {"train": 0, "val": 1}[split]
    rng = np.random.default_rng([spec.seed, split_key, index])
    size = spec.image_size
    img = _background(rng, size)

    # Distractors: blobs of body texture with no head, so the body alone is not the class.
    for _ in range(rng.integers(0, spec.distractors + 1)):
        e = rng.uniform(4, spec.max_size / 3)
        poly = _ellipse_polygon(*rng.uniform(0, size, 2), e, e * rng.uniform(0.3, 1),
                                rng.uniform(0, math.pi))
        img[_mask(size, [poly])] = rng.uniform(0, 255, 3)

    occupied = np.zeros((size, size), bool)
    annotations = []
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        label = int(rng.integers(spec.num_classes))
        for _attempt in range(10):
            obj = _sample_object(rng, spec, label)
            if obj is None:
                continue
            body, head = obj
            m = _mask(size, [body, head])
            if m.sum() < 16:
                continue
            # Occlusion: the new object is drawn on top, so it may hide part of earlier ones.
            if (m & occupied).sum() > spec.max_occlusion * m.sum():
                continue
            break
        else:
            continue
        body_colour = rng.uniform(0, 255, 3)
        shade = rng.uniform(0.6, 1.0, (size, size, 1))
        bm = _mask(size, [body])
        img[bm] = (body_colour * shade[bm])
        # Both colours are drawn either way, so that both kinds of set share every other draw.
        random_colour, jitter = rng.uniform(0, 255, 3), rng.uniform(-20, 20, 3)
        img[_mask(size, [head])] = (np.array(HEAD_COLOURS[label]) + jitter
                                    if spec.head_colour == "class" else random_colour)
        occupied |= m
        ys, xs = np.nonzero(m)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        annotations.append({
            "category_id": label + 1,
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "area": float(m.sum()),
            "iscrowd": 0,
        })
    return np.clip(img, 0, 255).astype(np.uint8), annotations


def write_split(spec: ShapesSpec, root: Path, split: str) -> Path:
    """Render one split as PNG files plus a COCO JSON; returns the JSON path."""
    n = spec.num_train if split == "train" else spec.num_val
    (root / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        img, anns = render_image(spec, split, i)
        name = f"{i:06d}.png"
        Image.fromarray(img).save(root / split / name)
        images.append({"id": i + 1, "file_name": name, "width": spec.image_size,
                       "height": spec.image_size})
        for ann in anns:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": i + 1})
    categories = [{"id": k + 1, "name": HEAD_SHAPES[k], "supercategory": "shape"}
                  for k in range(spec.num_classes)]
    coco = {"info": {"description": "mlc shapes", "spec": asdict(spec)}, "images": images,
            "annotations": annotations, "categories": categories}
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(coco))
    return path


def generate(spec: ShapesSpec, root: Path) -> Path:
    """Write train and val under root, unless the same spec is already there; returns root.

    The spec is stored in `root/spec.json` last, so a half-written set is regenerated; a lock
    beside the folder makes processes that ask for the same new set at once wait for one writer.
    """
    root = Path(root)
    stamp = root / "spec.json"

    def done() -> bool:
        return stamp.exists() and json.loads(stamp.read_text()) == asdict(spec)

    if done():
        return root
    with file_lock(root.parent / f".{root.name}.lock"):
        if not done():
            stamp.unlink(missing_ok=True)
            for split in ("train", "val"):
                write_split(spec, root, split)
            atomic_write_text(stamp, json.dumps(asdict(spec), indent=2))
    return root
