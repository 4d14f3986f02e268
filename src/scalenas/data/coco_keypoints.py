"""COCO-format keypoint datasets (COCO, CrowdPose, custom), read with pycocotools.

The file is validated once on load so that a bad dataset fails with a message naming the file and the
annotation, not with an IndexError deep inside a data-loader worker (tasks.md §3). Image ids always
come from the annotation file; file names are never parsed (HigherHRNet's ``int(file_name[-16:-4])``
breaks on custom datasets, tasks.md §1.7).
"""
from __future__ import annotations

import contextlib
import io
import os

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from scalenas.data.keypoint_info import KeypointInfo, check_category
from scalenas.errors import ScaleNASError
from scalenas.utils.io import read_json


def read_coco_json(path: str) -> dict:
    data = read_json(path, "annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise ScaleNASError(f"{path}: not a COCO annotation file (expected a mapping with 'images' and "
                            f"'annotations' lists)")
    return data


def coco_from_dict(data: dict) -> COCO:
    """A pycocotools COCO object built in memory (no file round trip, no progress prints)."""
    c = COCO()
    c.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


class CocoKeypoints:
    """A validated COCO keypoint annotation file plus its image folder.

    ``people(image_id)`` gives the (N, K, 3) joints fed to the targets (annotations with ``iscrowd == 0``
    or ``num_keypoints > 0``, as HigherHRNet, that label at least one joint); ``ignore_mask(image_id)``
    is 1 everywhere except crowd regions and people annotated with 0 keypoints, where the loss must not
    punish detections.
    """

    def __init__(self, ann_file: str, img_dir: str, info: KeypointInfo, check_images: bool = True):
        self.ann_file = ann_file
        self.img_dir = img_dir
        self.info = info
        data = read_coco_json(ann_file)
        self.category_id = self._category_id(data)
        self._validate(data)
        self.coco = coco_from_dict(data)
        self.image_ids = sorted(self.coco.imgs)
        if check_images:
            for iid in self.image_ids:
                p = self.image_path(iid)
                if not os.path.isfile(p):
                    raise ScaleNASError(f"{ann_file}: image {iid} ({self.coco.imgs[iid].get('file_name')!r}) "
                                        f"is missing: {p}")

    # -- validation -------------------------------------------------------------------------------
    def _validate(self, data: dict) -> None:
        f, k = self.ann_file, self.info.num_joints
        ids = set()
        for img in data["images"]:
            if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
                raise ScaleNASError(f"{f}: every image needs 'id' and 'file_name'; got {str(img)[:120]}")
            if img["id"] in ids:
                raise ScaleNASError(f"{f}: image id {img['id']} appears twice")
            ids.add(img["id"])
        for cat in data.get("categories", []):
            if isinstance(cat, dict) and "keypoints" in cat:
                check_category(self.info, cat, f)
        for ann in data["annotations"]:
            aid = ann.get("id", "?") if isinstance(ann, dict) else "?"
            if not isinstance(ann, dict) or "image_id" not in ann:
                raise ScaleNASError(f"{f}: annotation {aid} has no image_id")
            if ann["image_id"] not in ids:
                raise ScaleNASError(f"{f}: annotation {aid} refers to image {ann['image_id']}, which is not listed")
            if "id" not in ann:  # pycocotools indexes annotations by id (evaluation would fail with a KeyError)
                raise ScaleNASError(f"{f}: an annotation of image {ann['image_id']} has no 'id' (a unique integer)")
            ann.setdefault("category_id", self.category_id)  # optional for one-category files, needed by COCOeval
            kps = ann.get("keypoints")
            crowd = bool(ann.get("iscrowd", 0))
            if kps is None:
                if not crowd:
                    raise ScaleNASError(f"{f}: annotation {aid} (image {ann['image_id']}) has no 'keypoints'")
                ann["keypoints"] = [0] * (3 * k)
                kps = ann["keypoints"]
            if not isinstance(kps, list) or len(kps) != 3 * k:
                n = len(kps) if isinstance(kps, list) else type(kps).__name__
                raise ScaleNASError(f"{f}: annotation {aid} (image {ann['image_id']}) has keypoints of length {n}; "
                                    f"the dataset info {self.info.name!r} needs 3*{k} = {3 * k} ([x, y, v] per joint)")
            if "num_keypoints" not in ann:
                ann["num_keypoints"] = int(sum(1 for v in kps[2::3] if v > 0))
            if "area" not in ann:
                bb = ann.get("bbox")
                ann["area"] = float(bb[2] * bb[3]) if bb and len(bb) == 4 else 0.0
            ann.setdefault("iscrowd", 0)

    def _category_id(self, data: dict) -> int:
        cats = [c for c in data.get("categories", []) if isinstance(c, dict)]
        with_kps = [c["id"] for c in cats if "keypoints" in c]
        if with_kps:
            return int(with_kps[0])
        if cats:
            return int(cats[0]["id"])
        return 1

    # -- access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> str:
        return os.path.join(self.img_dir, self.coco.imgs[image_id]["file_name"])

    def load_image(self, image_id: int) -> np.ndarray:
        """(H, W, 3) uint8 BGR."""
        p = self.image_path(image_id)
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        if img is None:
            raise ScaleNASError(f"{self.ann_file}: image {image_id} could not be read: {p}")
        return img

    def image_size(self, image_id: int) -> tuple[int, int]:
        im = self.coco.imgs[image_id]
        if "height" in im and "width" in im:
            return int(im["height"]), int(im["width"])
        h, w = self.load_image(image_id).shape[:2]
        return h, w

    def annotations(self, image_id: int) -> list[dict]:
        return self.coco.imgToAnns.get(image_id, [])

    def ids_with_annotations(self) -> list[int]:
        """Training keeps only images with at least one annotation of any kind (HigherHRNet)."""
        return [i for i in self.image_ids if self.coco.imgToAnns.get(i)]

    def people(self, image_id: int) -> np.ndarray:
        k = self.info.num_joints
        rows = [np.asarray(a["keypoints"], np.float32).reshape(k, 3) for a in self.annotations(image_id)
                if a.get("iscrowd", 0) == 0 or a.get("num_keypoints", 0) > 0]
        # people without a labelled joint add nothing to the targets but would use up max_people slots
        rows = [r for r in rows if (r[:, 2] > 0).any()]
        return np.stack(rows) if rows else np.zeros((0, k, 3), np.float32)

    def ignore_mask(self, image_id: int, hw: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) float32: 0 on crowd regions and 0-keypoint people, 1 elsewhere."""
        h, w = hw or self.image_size(image_id)
        m = np.zeros((h, w), np.float32)
        for a in self.annotations(image_id):
            crowd = a.get("iscrowd", 0)
            if not crowd and a.get("num_keypoints", 0) > 0:
                continue
            seg = a.get("segmentation")
            if not seg:
                # no outline: fall back to the box so the region is still ignored
                bb = a.get("bbox")
                if bb and len(bb) == 4:
                    x0, y0 = max(int(bb[0]), 0), max(int(bb[1]), 0)
                    m[y0:int(np.ceil(bb[1] + bb[3])), x0:int(np.ceil(bb[0] + bb[2]))] = 1
                continue
            try:
                m += _decode_segmentation(seg, h, w)
            except Exception as e:  # malformed polygon/RLE: name it rather than crash in a worker
                raise ScaleNASError(f"{self.ann_file}: annotation {a.get('id')} (image {image_id}) has an "
                                    f"unreadable segmentation ({e})") from None
        return (m < 0.5).astype(np.float32)

    def subset(self, image_ids) -> COCO:
        """A COCO object holding only ``image_ids`` (for evaluating a held-out split)."""
        keep = set(image_ids)
        d = self.coco.dataset
        data = {k: v for k, v in d.items() if k not in ("images", "annotations")}
        data["images"] = [im for im in d["images"] if im["id"] in keep]
        data["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep]
        data.setdefault("categories", [{"id": self.category_id, "name": "person"}])
        return coco_from_dict(data)


def _decode_segmentation(seg, h: int, w: int) -> np.ndarray:
    if isinstance(seg, list):  # polygons
        rles = mask_utils.frPyObjects(seg, h, w)
        rle = mask_utils.merge(rles)
    elif isinstance(seg.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = seg
    return mask_utils.decode(rle).astype(np.float32)
