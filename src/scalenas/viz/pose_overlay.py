"""Skeleton overlays (PNG) of predicted and ground-truth people, coloured by the dataset info."""
from __future__ import annotations

import os

import cv2
import numpy as np

from scalenas.data.keypoint_info import KeypointInfo


def draw_people(image_bgr: np.ndarray, keypoints, info: KeypointInfo, threshold: float = 0.1,
                scores=None, thickness: int | None = None) -> np.ndarray:
    """Draw (P, K, 3) people on a copy of the image. A joint is drawn when its third value (score, or COCO
    visibility) exceeds ``threshold``; limbs when both ends are drawn."""
    img = np.ascontiguousarray(image_bgr.copy())
    kps = np.asarray(keypoints, np.float64).reshape(-1, info.num_joints, 3) if len(keypoints) else \
        np.zeros((0, info.num_joints, 3))
    s = max(img.shape[:2])
    t = thickness or max(1, int(round(s / 300)))
    r = t + 1
    for p, person in enumerate(kps):
        ok = person[:, 2] > threshold
        for a, b in info.skeleton:
            if ok[a] and ok[b]:
                ca, cb = info.colors[a], info.colors[b]
                col = tuple(int((x + y) / 2) for x, y in zip(ca, cb))
                cv2.line(img, (int(round(person[a, 0])), int(round(person[a, 1]))),
                         (int(round(person[b, 0])), int(round(person[b, 1]))), col, t, cv2.LINE_AA)
        for j in np.nonzero(ok)[0]:
            cv2.circle(img, (int(round(person[j, 0])), int(round(person[j, 1]))), r,
                       tuple(int(c) for c in info.colors[j]), -1, cv2.LINE_AA)
        if scores is not None and ok.any():
            x0, y0 = person[ok, 0].min(), person[ok, 1].min()
            cv2.putText(img, f"{float(scores[p]):.2f}", (int(x0), max(10, int(y0) - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35 * t, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def gt_keypoints(annotations: list[dict], num_joints: int) -> np.ndarray:
    """(P, K, 3) from COCO annotations with labelled joints (crowd / 0-keypoint entries are skipped)."""
    rows = [np.asarray(a["keypoints"], np.float64).reshape(num_joints, 3) for a in annotations
            if a.get("num_keypoints", 0) > 0]
    return np.stack(rows) if rows else np.zeros((0, num_joints, 3))


def save_overlay(path: str, image_bgr: np.ndarray, info: KeypointInfo, pred_keypoints, pred_scores=None,
                 gt=None, threshold: float = 0.1) -> None:
    """Write ``path`` (PNG): the prediction, and beside it the ground truth when ``gt`` ((P, K, 3)) is given."""
    left = draw_people(image_bgr, pred_keypoints, info, threshold, pred_scores)
    if gt is not None:
        right = draw_people(image_bgr, gt, info, 0)
        cv2.putText(left, "prediction", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(right, "ground truth", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        sep = np.full((left.shape[0], 4, 3), 255, np.uint8)
        left = np.concatenate([left, sep, right], axis=1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ok, buf = cv2.imencode(".png", left)
    with open(path, "wb") as f:
        f.write(buf.tobytes())
