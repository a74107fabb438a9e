"""Data: the generated sets (shapes.py), COCO-format loading (coco.py), sets by scale (build.py)."""
