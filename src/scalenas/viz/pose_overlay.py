"""Skeleton overlays (PNG) of predicted and ground-truth people, coloured by the dataset info."""
from __future__ import annotations

import os

import cv2
import numpy as np

from scalenas.data.keypoint_info import KeypointInfo


#: Default person score below which ``scalenas predict`` leaves a detection out of the overlay (the JSON
#: keeps it). Person scores are mean joint heatmap peaks in 0..1; untrained or uncertain nets produce
#: many near-zero detections that only clutter a drawing.
DEFAULT_MIN_SCORE = 0.1

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_people(image_bgr: np.ndarray, keypoints, info: KeypointInfo, threshold: float = 0.1,
                scores=None, thickness: int | None = None, min_score: float | None = None) -> np.ndarray:
    """Draw (P, K, 3) people on a copy of the image. A joint is drawn when its third value (score, or COCO
    visibility) exceeds ``threshold``; limbs when both ends are drawn. With ``scores``, each person gets a
    score label (labels never overlap, see :func:`place_labels`) and people scoring below ``min_score``
    are not drawn."""
    img = np.ascontiguousarray(image_bgr.copy())
    kps = np.asarray(keypoints, np.float64).reshape(-1, info.num_joints, 3) if len(keypoints) else \
        np.zeros((0, info.num_joints, 3))
    s = max(img.shape[:2])
    t = thickness or max(1, int(round(s / 300)))
    r = t + 1
    keep = [p for p in range(len(kps)) if scores is None or min_score is None or float(scores[p]) >= min_score]
    labels = []  # (text, bbox of the drawn joints) per labelled person
    for p in keep:
        person = kps[p]
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
            labels.append((float(scores[p]), (person[ok, 0].min(), person[ok, 1].min(), person[ok, 0].max(),
                                              person[ok, 1].max())))
    _draw_labels(img, labels, 0.35 * t)
    return img


def place_labels(anchors, sizes, image_hw: tuple[int, int], gap: int = 1) -> list[tuple[int, int, int, int] | None]:
    """Non-overlapping positions for text boxes: ``anchors`` are (x0, y0, x1, y1) boxes of the labelled
    objects, ``sizes`` the (w, h) of each label. Returns per label its box (x, y, w, h) inside the image,
    pairwise disjoint with at least ``gap`` pixels between boxes, or None when no free place was found.

    Greedy, in the given order (pass the most important first): the preferred place is just above the
    object's top-left corner; then below it, then rows further up and down and columns to either side.
    """
    ih, iw = image_hw
    placed: list[tuple[int, int, int, int]] = []
    out: list[tuple[int, int, int, int] | None] = []
    for (x0, y0, x1, y1), (w, h) in zip(anchors, sizes):
        w, h = int(w), int(h)
        box = None
        for x, y in _candidates(int(round(x0)), int(round(y0)), int(round(y1)), w, h, iw, ih):
            if 0 <= x and x + w <= iw and 0 <= y and y + h <= ih and \
                    not any(_overlap((x, y, w, h), q, gap) for q in placed):
                box = (x, y, w, h)
                break
        if box is not None:
            placed.append(box)
        out.append(box)
    return out


def _candidates(x0: int, y0: int, y1: int, w: int, h: int, iw: int, ih: int) -> list[tuple[int, int]]:
    """Top-left corners to try: just above the object, just below it (both clamped into the image), then
    a grid of label-sized steps ordered by distance from the first place."""
    x = min(max(x0, 0), iw - w)
    above, below = min(max(y0 - h - 2, 0), ih - h), min(max(y1 + 2, 0), ih - h)
    step_x, step_y = max(1, w // 2), h + 2
    grid = [(x + i * step_x, above + j * step_y)
            for i in range(-(iw // step_x) - 1, iw // step_x + 2) for j in range(-(ih // step_y) - 1, ih // step_y + 2)]
    grid.sort(key=lambda c: (c[0] - x) ** 2 + (c[1] - above) ** 2)
    return [(x, above), (x, below)] + grid


def _overlap(a, b, gap: int) -> bool:
    return not (a[0] + a[2] + gap <= b[0] or b[0] + b[2] + gap <= a[0] or
                a[1] + a[3] + gap <= b[1] or b[1] + b[3] + gap <= a[1])


def label_size(text: str, scale: float) -> tuple[int, int]:
    """(w, h) of the box a label occupies, descenders included."""
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    return tw + 2, th + base + 2


def _draw_labels(img: np.ndarray, labels, scale: float) -> None:
    """Score labels on a dark backing box each, highest score placed first, none overlapping."""
    labels = sorted(labels, key=lambda item: -item[0])
    texts = [f"{sc:.2f}" for sc, _ in labels]
    sizes = [label_size(tx, scale) for tx in texts]
    boxes = place_labels([bb for _, bb in labels], sizes, img.shape[:2])
    for text, box in zip(texts, boxes):
        if box is None:
            continue  # no free place left in the image; the JSON still has the score
        x, y, w, h = box
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (0, 0, 0), -1)
        (_, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
        cv2.putText(img, text, (x + 1, y + 1 + th), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def gt_keypoints(annotations: list[dict], num_joints: int) -> np.ndarray:
    """(P, K, 3) from COCO annotations with labelled joints (crowd / 0-keypoint entries are skipped)."""
    rows = [np.asarray(a["keypoints"], np.float64).reshape(num_joints, 3) for a in annotations
            if a.get("num_keypoints", 0) > 0]
    return np.stack(rows) if rows else np.zeros((0, num_joints, 3))


def save_overlay(path: str, image_bgr: np.ndarray, info: KeypointInfo, pred_keypoints, pred_scores=None,
                 gt=None, threshold: float = 0.1, min_score: float | None = None) -> None:
    """Write ``path`` (PNG): the prediction (people scoring at least ``min_score``), and beside it the
    ground truth when ``gt`` ((P, K, 3)) is given."""
    left = draw_people(image_bgr, pred_keypoints, info, threshold, pred_scores, min_score=min_score)
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
