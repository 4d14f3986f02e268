"""Keypoint dataset descriptions as data: names, flip index, OKS sigmas, skeleton, grouping order, colours.

Everything that differs between COCO (17 joints), CrowdPose (14) and a user's own dataset lives here,
so targets, flips, decoding, evaluation and drawing never hard-code a joint count (the mmpose issue
corpus is full of IndexErrors from a K-specific flip index; tasks.md §3).

A custom dataset is described by a small JSON or YAML file::

    name: quokka
    keypoints: [ear_tip_left, ear_tip_right, eye_left, eye_right, nose, paw_left, paw_right]
    flip_pairs: [[ear_tip_left, ear_tip_right], [eye_left, eye_right], [paw_left, paw_right]]
    sigmas: [0.05, 0.05, 0.03, 0.03, 0.03, 0.08, 0.08]     # optional, default 0.05 each
    skeleton: [[ear_tip_left, eye_left], [eye_left, nose]]  # optional; names or 0-based indices
    joint_order: [nose, eye_left, ...]                      # optional grouping order (default: file order)
    upper_body_ids: [ear_tip_left, ...]                     # optional (with lower_body_ids): top-down
    lower_body_ids: [paw_left, paw_right]                   #   half-body augmentation; omitted disables it

``flip_index`` (a full permutation) may be given instead of ``flip_pairs``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from scalenas.errors import ScaleNASError

# A mid-range COCO sigma (elbows/wrists sit at 0.062-0.072); used when a custom file gives none.
DEFAULT_SIGMA = 0.05


@dataclass(frozen=True)
class KeypointInfo:
    """One dataset's keypoint conventions. Indices are 0-based; colours are BGR (OpenCV)."""

    name: str
    keypoints: tuple[str, ...]
    flip_index: tuple[int, ...]
    sigmas: tuple[float, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    joint_order: tuple[int, ...] = ()
    colors: tuple[tuple[int, int, int], ...] = ()
    #: joints of the upper / lower body for top-down half-body augmentation; both empty disables it
    upper_body_ids: tuple[int, ...] = ()
    lower_body_ids: tuple[int, ...] = ()
    #: where the description came from, for error messages ("builtin" or a file path)
    source: str = field(default="builtin", compare=False)

    def __post_init__(self):
        k = len(self.keypoints)
        where = self.source
        if k < 1:
            raise ScaleNASError(f"{where}: keypoint info {self.name!r} lists no keypoints")
        if len(set(self.keypoints)) != k:
            raise ScaleNASError(f"{where}: keypoint names are not unique: {list(self.keypoints)}")
        check_flip_index(self.flip_index, k, where)
        if len(self.sigmas) != k:
            raise ScaleNASError(f"{where}: sigmas has {len(self.sigmas)} values but there are {k} keypoints")
        if any(not (s > 0) for s in self.sigmas):
            raise ScaleNASError(f"{where}: sigmas must be positive, got {list(self.sigmas)}")
        for a, b in self.skeleton:
            if not (0 <= a < k and 0 <= b < k):
                raise ScaleNASError(f"{where}: skeleton edge ({a}, {b}) is out of range for {k} keypoints")
        if not self.joint_order:
            object.__setattr__(self, "joint_order", tuple(range(k)))
        elif sorted(self.joint_order) != list(range(k)):
            raise ScaleNASError(f"{where}: joint_order must list every keypoint index 0..{k - 1} once, "
                                f"got {list(self.joint_order)}")
        if not self.colors:
            object.__setattr__(self, "colors", _default_colors(self.keypoints, self.flip_index))
        elif len(self.colors) != k:
            raise ScaleNASError(f"{where}: colors has {len(self.colors)} entries but there are {k} keypoints")
        self._check_body_ids()

    def _check_body_ids(self) -> None:
        where, k = self.source, len(self.keypoints)
        up, low = self.upper_body_ids, self.lower_body_ids
        if bool(up) != bool(low):
            raise ScaleNASError(f"{where}: give both upper_body_ids and lower_body_ids (half-body augmentation "
                                f"picks one of the two sets), or neither")
        for key, ids in (("upper_body_ids", up), ("lower_body_ids", low)):
            bad = [i for i in ids if not 0 <= i < k]
            if bad:
                raise ScaleNASError(f"{where}: {key}: index {bad[0]} is out of range for {k} keypoints")
            if len(set(ids)) != len(ids):
                raise ScaleNASError(f"{where}: {key} lists a keypoint twice: {list(ids)}")
        both = sorted(set(up) & set(low))
        if both:
            raise ScaleNASError(f"{where}: keypoint {both[0]} is in both upper_body_ids and lower_body_ids")

    @property
    def has_half_body(self) -> bool:
        """Whether half-body augmentation is possible (the dataset names its upper and lower joints)."""
        return bool(self.upper_body_ids)

    @property
    def num_joints(self) -> int:
        return len(self.keypoints)

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        return [(i, j) for i, j in enumerate(self.flip_index) if i < j]

    def to_dict(self) -> dict:
        return {"name": self.name, "keypoints": list(self.keypoints), "flip_index": list(self.flip_index),
                "sigmas": list(self.sigmas), "skeleton": [list(e) for e in self.skeleton],
                "joint_order": list(self.joint_order), "colors": [list(c) for c in self.colors],
                "upper_body_ids": list(self.upper_body_ids), "lower_body_ids": list(self.lower_body_ids)}

    @staticmethod
    def from_dict(d: dict, source: str = "inline") -> "KeypointInfo":
        """Build from a mapping (file contents or an inline config); names or indices are accepted."""
        if not isinstance(d, dict):
            raise ScaleNASError(f"{source}: keypoint info must be a mapping, got {type(d).__name__}")
        known = {"name", "keypoints", "flip_pairs", "flip_index", "sigmas", "skeleton", "joint_order", "colors",
                 "upper_body_ids", "lower_body_ids"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ScaleNASError(f"{source}: unknown key(s) {unknown} in keypoint info; known: {sorted(known)}")
        names = d.get("keypoints")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ScaleNASError(f"{source}: 'keypoints' must be a non-empty list of names")
        k = len(names)
        lookup = {n: i for i, n in enumerate(names)}

        def idx(v, key):
            if isinstance(v, str):
                if v not in lookup:
                    raise ScaleNASError(f"{source}: {key}: unknown keypoint name {v!r}")
                return lookup[v]
            if isinstance(v, bool) or not isinstance(v, int):
                raise ScaleNASError(f"{source}: {key}: expected a keypoint name or index, got {v!r}")
            return v

        if "flip_index" in d and "flip_pairs" in d:
            raise ScaleNASError(f"{source}: give either flip_index or flip_pairs, not both")
        if "flip_index" in d:
            fi = d["flip_index"]
            if not isinstance(fi, list):
                raise ScaleNASError(f"{source}: flip_index must be a list")
            flip = tuple(idx(v, "flip_index") for v in fi)
        else:
            pairs = d.get("flip_pairs", [])
            if not isinstance(pairs, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
                raise ScaleNASError(f"{source}: flip_pairs must be a list of [left, right] pairs")
            flip = flip_index_from_pairs([(idx(a, "flip_pairs"), idx(b, "flip_pairs")) for a, b in pairs], k, source)
        sig = d.get("sigmas", [DEFAULT_SIGMA] * k)
        if not isinstance(sig, list) or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in sig):
            raise ScaleNASError(f"{source}: sigmas must be a list of numbers")
        skel = d.get("skeleton", [])
        if not isinstance(skel, list) or not all(isinstance(e, (list, tuple)) and len(e) == 2 for e in skel):
            raise ScaleNASError(f"{source}: skeleton must be a list of [a, b] edges")
        order = d.get("joint_order", [])
        if not isinstance(order, list):
            raise ScaleNASError(f"{source}: joint_order must be a list")
        colors = d.get("colors", [])
        if not isinstance(colors, list) or not all(isinstance(c, (list, tuple)) and len(c) == 3 for c in colors):
            raise ScaleNASError(f"{source}: colors must be a list of [b, g, r] triples")
        body = {}
        for key in ("upper_body_ids", "lower_body_ids"):
            v = d.get(key, [])
            if not isinstance(v, list):
                raise ScaleNASError(f"{source}: {key} must be a list of keypoint names or indices")
            body[key] = tuple(idx(j, key) for j in v)
        return KeypointInfo(
            name=str(d.get("name", os.path.splitext(os.path.basename(source))[0] or "custom")),
            keypoints=tuple(names), flip_index=flip, sigmas=tuple(float(s) for s in sig),
            skeleton=tuple((idx(a, "skeleton"), idx(b, "skeleton")) for a, b in skel),
            joint_order=tuple(idx(v, "joint_order") for v in order),
            colors=tuple(tuple(int(c) for c in col) for col in colors), source=source, **body)


def check_flip_index(flip_index, k: int, where: str = "keypoint info") -> None:
    """A flip index must be an involutive permutation of 0..k-1 (flipping twice is the identity)."""
    fi = list(flip_index)
    if len(fi) != k:
        raise ScaleNASError(f"{where}: flip index has {len(fi)} entries but there are {k} keypoints")
    if sorted(fi) != list(range(k)):
        raise ScaleNASError(f"{where}: flip index {fi} is not a permutation of 0..{k - 1}")
    bad = [i for i in range(k) if fi[fi[i]] != i]
    if bad:
        raise ScaleNASError(f"{where}: flip index {fi} is not symmetric (joint {bad[0]} -> {fi[bad[0]]} -> "
                            f"{fi[fi[bad[0]]]}); left/right swaps must pair joints both ways")


def flip_index_from_pairs(pairs, k: int, where: str = "keypoint info") -> tuple[int, ...]:
    """Swap pairs -> full flip index; joints in no pair map to themselves (nose, neck, head)."""
    fi = list(range(k))
    seen: set[int] = set()
    for a, b in pairs:
        if a == b:
            raise ScaleNASError(f"{where}: flip pair ({a}, {b}) swaps a keypoint with itself")
        for v in (a, b):
            if not 0 <= v < k:
                raise ScaleNASError(f"{where}: flip pair ({a}, {b}) is out of range for {k} keypoints")
            if v in seen:
                raise ScaleNASError(f"{where}: keypoint {v} appears in more than one flip pair, so the flip "
                                    f"pairs do not form a permutation")
            seen.add(v)
        fi[a], fi[b] = b, a
    return tuple(fi)


def _default_colors(names, flip_index) -> tuple[tuple[int, int, int], ...]:
    """Left joints warm, right joints cool, centre joints green: sides stay readable in overlays."""
    out = []
    for i, n in enumerate(names):
        low = n.lower()
        if "left" in low or low.endswith(("_l", "-l")):
            out.append((0, 128, 255))
        elif "right" in low or low.endswith(("_r", "-r")):
            out.append((255, 128, 0))
        elif flip_index[i] != i:
            out.append((0, 128, 255) if i < flip_index[i] else (255, 128, 0))
        else:
            out.append((0, 200, 0))
    return tuple(out)


_COCO_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
               "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
               "left_knee", "right_knee", "left_ankle", "right_ankle")
# COCO's own skeleton (the annotation file's, 1-based there).
_COCO_SKELETON_1 = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
                    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))
# pose-ae-train / HigherHRNet grouping order: head, shoulders, hips, then limbs outwards (1-based there).
_COCO_ORDER_1 = (1, 2, 3, 4, 5, 6, 7, 12, 13, 8, 9, 10, 11, 14, 15, 16, 17)

_CROWD_NAMES = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck")
_CROWD_SKELETON = ((12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7), (6, 7),
                   (6, 8), (8, 10), (7, 9), (9, 11))
# Same idea as COCO's order (head first, torso, then limbs outwards); HigherHRNet reused the 17-joint order.
_CROWD_ORDER = (12, 13, 0, 1, 6, 7, 2, 3, 4, 5, 8, 9, 10, 11)


def coco() -> KeypointInfo:
    return KeypointInfo(
        name="coco", keypoints=_COCO_NAMES,
        flip_index=(0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15),
        sigmas=tuple(v / 10.0 for v in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                                        1.07, 1.07, .87, .87, .89, .89)),
        skeleton=tuple((a - 1, b - 1) for a, b in _COCO_SKELETON_1),
        joint_order=tuple(i - 1 for i in _COCO_ORDER_1),
        # HRNet's coco.py: head and arms (0-10) vs hips and legs (11-16)
        upper_body_ids=tuple(range(11)), lower_body_ids=tuple(range(11, 17)))


def crowdpose() -> KeypointInfo:
    return KeypointInfo(
        name="crowdpose", keypoints=_CROWD_NAMES,
        flip_index=(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13),
        sigmas=tuple(v / 10.0 for v in (.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79)),
        skeleton=_CROWD_SKELETON, joint_order=_CROWD_ORDER,
        # shoulders, elbows, wrists, head, neck vs hips, knees, ankles
        upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13), lower_body_ids=(6, 7, 8, 9, 10, 11))


BUILTIN = {"coco": coco, "crowdpose": crowdpose}


def load_keypoint_info(path: str) -> KeypointInfo:
    """Read a custom dataset description from a .json, .yaml or .yml file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ScaleNASError(f"{path}: cannot read keypoint info ({e.strerror})") from None
    try:
        if path.lower().endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # json.JSONDecodeError / yaml.YAMLError: both are the user's file at fault
        raise ScaleNASError(f"{path}: invalid keypoint info file ({e})") from None
    return KeypointInfo.from_dict(data, source=path)


def get_keypoint_info(spec: "str | dict | KeypointInfo", base_dir: str | None = None) -> KeypointInfo:
    """``"coco"``/``"crowdpose"``, a path to a JSON/YAML description (as given, else relative to
    ``base_dir``), an inline mapping, or a ready ``KeypointInfo``."""
    if isinstance(spec, KeypointInfo):
        return spec
    if isinstance(spec, dict):
        return KeypointInfo.from_dict(spec, source="task.keypoints")
    if isinstance(spec, str):
        if spec.lower() in BUILTIN:
            return BUILTIN[spec.lower()]()
        path = spec
        if not os.path.exists(path) and base_dir and not os.path.isabs(spec):
            path = os.path.join(base_dir, spec)
        if not os.path.exists(path):
            raise ScaleNASError(f"task.keypoints: {spec!r} is neither a builtin ({', '.join(BUILTIN)}) nor an "
                                f"existing keypoint info file ({path})")
        return load_keypoint_info(path)
    raise ScaleNASError(f"task.keypoints: expected a builtin name, a file path or a mapping, got {spec!r}")


def check_category(info: KeypointInfo, category: dict[str, Any], where: str) -> None:
    """A COCO category's own keypoint list must agree with the dataset info in length."""
    names = category.get("keypoints")
    if names is not None and len(names) != info.num_joints:
        raise ScaleNASError(f"{where}: category {category.get('id')} ({category.get('name')!r}) lists "
                            f"{len(names)} keypoints but the dataset info {info.name!r} has {info.num_joints}; "
                            f"set task.keypoints to the matching description")
