"""Keypoint AP with the reference tools (tasks.md §1.8, §5): pycocotools for COCO-style datasets,
xtcocotools' ``keypoints_crowd`` for CrowdPose. Metrics are returned in percent."""
from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from scalenas.errors import ScaleNASError
from scalenas.utils.io import atomic_write_json

COCO_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
CROWD_NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "APE", "APM", "APH")


def _pct(v: float) -> float:
    # COCOeval reports -1 where an area/crowd range holds no ground truth: that is "undefined", not 0
    return float("nan") if v < 0 else float(v) * 100.0


def _load_results(gt, results: list[dict]):
    with contextlib.redirect_stdout(io.StringIO()):
        return gt.loadRes(copy.deepcopy(results))


def _check_results(results: list[dict], k: int) -> None:
    for r in results:
        if len(r.get("keypoints", ())) != 3 * k:
            raise ScaleNASError(f"keypoint results for image {r.get('image_id')} have "
                                f"{len(r.get('keypoints', ()))} values; expected 3*{k}")


def coco_keypoint_ap(gt: COCO, results: list[dict], sigmas, image_ids=None) -> dict[str, float]:
    """``COCOeval(gt, dt, 'keypoints')`` with the dataset's OKS sigmas, restricted to ``image_ids`` when
    given (only the images actually decoded count). No detections -> every AP/AR is 0."""
    sig = np.asarray(sigmas, np.float64)
    _check_results(results, len(sig))
    ids = sorted(gt.getImgIds() if image_ids is None else image_ids)
    if not results:
        return {n: 0.0 for n in COCO_NAMES}
    dt = _load_results(gt, results)
    ev = COCOeval(gt, dt, "keypoints")
    ev.params.kpt_oks_sigmas = sig
    ev.params.imgIds = ids
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {n: _pct(v) for n, v in zip(COCO_NAMES, ev.stats)}


def require_xtcocotools():
    """xtcocotools' (COCO, COCOeval), or a one-line ``ScaleNASError`` saying how to install it. Also the
    start-of-run check of tasks that evaluate with it (``Task.check_dependencies``)."""
    try:
        from xtcocotools.coco import COCO as XCOCO
        from xtcocotools.cocoeval import COCOeval as XCOCOeval
    except Exception as e:  # ImportError, or the numpy-ABI ValueError of the prebuilt wheel
        # an installed but broken wheel stays "already satisfied" unless it is replaced
        again = "" if isinstance(e, ImportError) else "--force-reinstall --no-deps "
        raise ScaleNASError(
            "CrowdPose evaluation needs xtcocotools, which is not importable here "
            f"({type(e).__name__}: {e}). Install it from source: pip install cython && pip install {again}"
            "--no-binary xtcocotools --no-build-isolation xtcocotools") from None
    return XCOCO, XCOCOeval


def _crowd_subset(gt_json: dict, image_ids) -> dict:
    """The ground truth of the evaluated images only: xtcocotools splits easy/medium/hard over every
    image of the annotation file it re-reads, so that file must hold exactly the evaluated images."""
    keep = {im["id"] for im in gt_json.get("images", [])} if image_ids is None else set(image_ids)
    images = [im for im in gt_json.get("images", []) if im["id"] in keep]
    missing = [im["id"] for im in images if "crowdIndex" not in im]
    if missing:
        raise ScaleNASError(f"CrowdPose metric: image {missing[0]} has no 'crowdIndex' (the CrowdPose "
                            f"annotation key); use metric: coco for datasets without it")
    data = {k: v for k, v in gt_json.items() if k not in ("images", "annotations")}
    data["images"] = images
    data["annotations"] = [a for a in gt_json.get("annotations", []) if a["image_id"] in keep]
    return data


def crowdpose_ap(gt_json: dict, results: list[dict], sigmas, image_ids=None) -> dict[str, float]:
    """CrowdPose AP through xtcocotools (``keypoints_crowd``, OKS area = 0.53 * bbox w * h, AP easy /
    medium / hard by the images' ``crowdIndex`` < 0.2 / < 0.8 / rest); an optional extra because its
    PyPI wheel breaks on numpy 2 (environment.md). Restricted to ``image_ids`` when given."""
    XCOCO, XCOCOeval = require_xtcocotools()
    sig = np.asarray(sigmas, np.float64)
    _check_results(results, len(sig))
    data = _crowd_subset(gt_json, image_ids)
    kept = {im["id"] for im in data["images"]}
    results = [r for r in results if r["image_id"] in kept]
    if not results:
        return {n: 0.0 for n in CROWD_NAMES}
    # keypoints_crowd re-opens the ground truth by file name (COCO.anno_file) for the crowding split
    with tempfile.TemporaryDirectory(prefix="scalenas-crowdpose-") as tmp:
        path = os.path.join(tmp, "gt.json")
        atomic_write_json(path, data, indent=None)
        with contextlib.redirect_stdout(io.StringIO()):
            gt = XCOCO(path)
            dt = gt.loadRes(copy.deepcopy(results))
            ev = XCOCOeval(gt, dt, "keypoints_crowd", sig, use_area=False)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    return {n: _pct(v) for n, v in zip(CROWD_NAMES, ev.stats)}


def evaluate_keypoints(gt: COCO, results: list[dict], sigmas, dataset: str = "coco",
                       image_ids=None) -> dict[str, float]:
    """Dispatch on the dataset: ``"crowdpose"`` uses xtcocotools, everything else pycocotools."""
    if dataset == "crowdpose":
        return crowdpose_ap(gt.dataset, results, sigmas, image_ids)
    return coco_keypoint_ap(gt, results, sigmas, image_ids)
