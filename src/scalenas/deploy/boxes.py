"""Person boxes for top-down prediction (``scalenas predict MODEL_DIR IMAGE --boxes DETS.json``).

A top-down model sees one person crop at a time, so a photo needs person boxes first. ``DETS.json`` is
a detector's output in the COCO results format, the format of HRNet's
``COCO_val2017_detections_AP_H_56_person.json``: a list of ``{"image_id", "bbox": [x, y, w, h], "score"}``
(entries whose ``category_id`` is another than the person category, 1 in COCO, are skipped, as HRNet
skips them, so a multi-class detector's file can be given as it is).

Matching an entry to an image file: by ``file_name`` when the entry carries one (compared with the
image's base name), else by ``image_id`` against the number the file is named after (COCO names its
files by id: ``000000397133.jpg`` is image 397133). An image the file has no box for gets no people.
"""
from __future__ import annotations

import os

from scalenas.data.topdown import detection_box
from scalenas.errors import ScaleNASError
from scalenas.utils.io import read_json


class PersonBoxes:
    """The boxes of a COCO-results detections file, grouped by image id and by file name."""

    def __init__(self, path: str, category_id: int = 1):
        doc = read_json(path, "detections file (COCO results format)")
        if not isinstance(doc, list):
            raise ScaleNASError(f"{path}: expected a list of detections (COCO results format: "
                                f"[{{\"image_id\", \"bbox\", \"score\"}}, ...]), got a {type(doc).__name__}")
        self.path = path
        self.by_id: dict[int, list[list[float]]] = {}
        self.by_name: dict[str, list[list[float]]] = {}
        for i, entry in enumerate(doc):
            bbox, score = detection_box(entry, path, i, file_name_ok=True, default_score=1.0)
            box = bbox + [score]
            if entry.get("category_id", category_id) != category_id:
                continue
            if "file_name" in entry:
                self.by_name.setdefault(os.path.basename(str(entry["file_name"])), []).append(box)
            else:
                try:
                    self.by_id.setdefault(int(entry["image_id"]), []).append(box)
                except (TypeError, ValueError):
                    raise ScaleNASError(f"{path}: detection {i}: image_id {entry['image_id']!r} is not an "
                                        f"integer") from None

    def for_image(self, image_path: str) -> tuple[list[list[float]], str]:
        """The ``[x, y, w, h, score]`` boxes of ``image_path`` and how they were matched (for messages)."""
        name = os.path.basename(image_path)
        if name in self.by_name:
            return self.by_name[name], f"file name {name}"
        stem = os.path.splitext(name)[0]
        if stem.isdigit():
            return self.by_id.get(int(stem), []), f"image id {int(stem)}"
        return [], f"file name {name} (not a number, so no image_id matches)"
