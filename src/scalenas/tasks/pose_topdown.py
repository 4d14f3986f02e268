"""Top-down pose (HRNet's pipeline, method §5.4) as a ``Task``: one person crop per sample, Gaussian
heatmap targets with target weights, JointsMSELoss; at evaluation person boxes (ground truth or a
detector's) -> crops -> heatmaps (flip test) -> joints -> rescoring and OKS-NMS -> OKS AP.

Splits as bottom-up: ``train``, ``val``, ``test`` from the config; ``search`` is ``search_holdout``
training images held out (a deterministic draw) and always uses ground-truth boxes, so the search
ranks subnets on the pose network alone. ``max_images`` counts images, not people.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Literal

import numpy as np
import torch
import torch.distributed as dist
from pydantic import Field, field_validator

from scalenas.config import Strict
from scalenas.data.coco_keypoints import CocoKeypoints
from scalenas.data.keypoint_info import get_keypoint_info
from scalenas.data.pose_transforms import box_to_center_scale, normalize, warp_image
from scalenas.data.topdown import (STRIDE, CropParams, PersonInstance, TopDownAugment, TopDownDataset, crop_joints,
                                   detection_instances, gaussian_targets, gt_instances)
from scalenas.errors import ScaleNASError
from scalenas.space.heads import HeadSpec
from scalenas.tasks.base import TASKS, Task, eval_slice
from scalenas.tasks.pose_eval import evaluate_keypoints, require_xtcocotools
from scalenas.tasks.pose_losses import joints_mse_loss
from scalenas.tasks.pose_splits import KeypointSplits, PoseDataConfig, collate, multiples_of_32
from scalenas.tasks.topdown_decode import (TopDownDecodeConfig, decode_heatmaps, infer_heatmaps, rescore,
                                           topdown_results)
from scalenas.utils.io import atomic_write_json
from scalenas.utils.runtime import loader_workers, rank_and_world
from scalenas.viz.pose_overlay import DEFAULT_MIN_SCORE, gt_keypoints, save_overlay


class TopDownLossConfig(Strict):
    use_target_weight: bool = True
    #: per-joint loss weights (K values, HRNet ``USE_DIFFERENT_JOINTS_WEIGHT``) or null for all 1
    joint_weights: list[float] | None = None

    @field_validator("joint_weights")
    @classmethod
    def _nonneg(cls, v):
        if v is not None and any(not (w >= 0) for w in v):
            raise ValueError(f"joint weights must be >= 0, got {v}")
        return v


class TopDownInferenceConfig(Strict):
    """Test-time settings (HRNet's released COCO configs: flip test, shift, rescoring at 0.2, OKS-NMS 0.9)."""

    flip: bool = True
    shift_heatmap: bool = True
    dark: bool = False
    dark_kernel: int = Field(11, ge=1)
    #: person boxes for val/test: "gt" or a COCO results-format detections JSON (relative to root)
    boxes: str = "gt"
    det_score_threshold: float = 0.0
    rescore_threshold: float = 0.2
    oks_nms_threshold: float = Field(0.9, ge=0, le=1)
    batch_size: int = Field(32, ge=1)

    @field_validator("dark_kernel")
    @classmethod
    def _odd(cls, v):
        if v % 2 == 0:
            raise ValueError("dark_kernel must be odd (the blur is centred on the pixel)")
        return v


class TopDownPoseConfig(PoseDataConfig):
    name: Literal["pose-topdown"] = "pose-topdown"
    #: (height, width) of the person crop; "256x192" is accepted
    input_hw: tuple[int, int] = (256, 192)
    #: Gaussian σ in heatmap pixels (HRNet: 2 at 256x192, 3 at 384x288)
    sigma: float = Field(2.0, gt=0)
    #: DARK's unbiased encoding: Gaussians centred on the sub-pixel joint instead of HRNet's rounded one
    #: (see data.topdown.gaussian_targets); pair with ``inference.dark``
    unbiased_encoding: bool = False
    augment: TopDownAugment = TopDownAugment()
    loss: TopDownLossConfig = TopDownLossConfig()
    inference: TopDownInferenceConfig = TopDownInferenceConfig()

    @field_validator("input_hw", mode="before")
    @classmethod
    def _hw_text(cls, v):
        if isinstance(v, str):
            parts = v.lower().replace("×", "x").split("x")
            try:
                return tuple(int(p) for p in parts)
            except ValueError:
                raise ValueError(f"expected HxW such as 256x192, got {v!r}") from None
        return v

    @field_validator("input_hw")
    @classmethod
    def _mult32(cls, v):
        multiples_of_32("height and width", v)
        return v


class _OracleForward:
    """A "perfect network" for one batch of crops: returns the targets rendered from the ground truth for
    the plain crops and, for their mirror images (``images.flip(3)``, the flip test's second pass), the
    targets of the mirrored joints. Inputs are matched exactly, so it works however the decoder batches."""

    def __init__(self, images: torch.Tensor, plain: np.ndarray, mirrored: np.ndarray):
        self.images, self.mirror = images, images.flip(3)
        self.plain, self.mirrored = torch.from_numpy(plain), torch.from_numpy(mirrored)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b = self.images.shape[0]
        out = []
        for chunk in torch.split(x, b):
            if torch.equal(chunk, self.images[:len(chunk)]):
                out.append(self.plain[:len(chunk)])
            elif torch.equal(chunk, self.mirror[:len(chunk)]):
                out.append(self.mirrored[:len(chunk)])
            else:
                raise ValueError("oracle: an input that is neither the batch of crops nor its mirror")
        return torch.cat(out)


@TASKS.register
class TopDownPoseTask(KeypointSplits, Task):
    Config = TopDownPoseConfig
    name = "pose-topdown"
    metric_name = "AP"
    sample_unit = "person crops"  # an epoch is one pass over the people, as in HRNet

    def __init__(self, cfg: TopDownPoseConfig):
        self.cfg = cfg
        self.info = get_keypoint_info(cfg.keypoints, cfg.root or None)
        self.metric = cfg.metric or ("crowdpose" if self.info.name == "crowdpose" else "coco")
        jw = cfg.loss.joint_weights
        if jw is not None and len(jw) != self.info.num_joints:
            raise ScaleNASError(f"task.loss.joint_weights: {len(jw)} values but the keypoint info "
                                f"{self.info.name!r} has {self.info.num_joints} keypoints")
        self._indexes: dict[str, CocoKeypoints] = {}
        self._holdout: list[int] | None = None

    def check_dependencies(self) -> None:
        if self.metric == "crowdpose":
            require_xtcocotools()

    # -- description ------------------------------------------------------------------------------
    @property
    def head(self) -> HeadSpec:
        return HeadSpec(kind="pose-topdown", num_joints=self.info.num_joints)

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.cfg.input_hw[0]), int(self.cfg.input_hw[1])

    @property
    def aspect_ratio(self) -> float:
        h, w = self.input_hw
        return w / h

    def decode_config(self, **overrides) -> TopDownDecodeConfig:
        t = self.cfg.inference
        return dataclasses.replace(TopDownDecodeConfig(
            flip=t.flip, shift_heatmap=t.shift_heatmap, dark=t.dark, dark_kernel=t.dark_kernel,
            rescore_threshold=t.rescore_threshold, oks_nms_threshold=t.oks_nms_threshold), **overrides)

    # -- data -------------------------------------------------------------------------------------
    def instances(self, split: str, image_ids=None, boxes: str | None = None) -> list[PersonInstance]:
        """People of ``split`` (of ``image_ids`` when given): ground-truth boxes for train and search, and
        for val/test unless ``boxes`` (default ``inference.boxes``) names a detections file."""
        idx = self.index(split)
        ids = self.split_ids(split) if image_ids is None else image_ids
        boxes = self.cfg.inference.boxes if boxes is None else boxes
        pad = self.cfg.augment.box_padding
        if split in ("train", "search") or boxes == "gt":
            return gt_instances(idx, ids, self.aspect_ratio, pad)
        return detection_instances(self._path(boxes), idx, self.aspect_ratio, self.cfg.inference.det_score_threshold,
                                   pad, ids)

    def build_dataset(self, split: str, train: bool = False) -> TopDownDataset:
        insts = self.instances(split, boxes="gt")
        if not insts:
            raise ScaleNASError(f"split {split!r} has no person with a labelled keypoint "
                                f"({self.index(split).ann_file})")
        return TopDownDataset(self.index(split), insts, self.cfg, self.info, train)

    def collate(self, samples: list[dict]) -> dict:
        return collate(samples)

    # -- training ---------------------------------------------------------------------------------
    def loss(self, outputs, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        pred = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        w = batch["target_weight"] if self.cfg.loss.use_target_weight else None
        loss = joints_mse_loss(pred, batch["target"], w)
        return loss, {"mse": float(loss.detach())}

    # -- evaluation -------------------------------------------------------------------------------
    def num_eval_images(self, split: str) -> int:
        return len(self.split_ids(split))  # images, not the person crops build_dataset yields

    def evaluate(self, model: torch.nn.Module, split: str, device: torch.device | str = "cpu",
                 max_images: int | None = None, out_dir: str | None = None, *,
                 first_image: int = 0) -> dict[str, float]:
        """OKS AP of ``model`` on the people of ``split`` (``max_images`` images from ``first_image``). Under
        torch.distributed each rank runs a shard of the images (so OKS-NMS sees all of an image's
        people); results are gathered before COCOeval."""
        was_training = model.training
        model.eval()
        try:
            return self._evaluate(lambda batch, insts: model, split, device, eval_slice(max_images, first_image),
                                  out_dir, self.decode_config())
        finally:
            model.train(was_training)

    def evaluate_oracle(self, split: str, flip: bool | None = None, max_images: int | None = None,
                        out_dir: str | None = None) -> dict[str, float]:
        """AP of a perfect network on ground-truth boxes: heatmaps rendered by the training target
        generator from the ground-truth joints (and, for the flip test's mirrored pass, from the mirrored
        joints), decoded by the real decoder. The ceiling that the targets, the decoder and this input
        size allow; far below 100 means a decoder or data problem (or people too small for the input)."""
        dcfg = self.decode_config(**({} if flip is None else {"flip": flip}))
        return self._evaluate(self._oracle_forward, split, "cpu", eval_slice(max_images), out_dir, dcfg, boxes="gt")

    def _oracle_forward(self, batch: dict, insts: list[PersonInstance]) -> _OracleForward:
        w, h = self.input_hw[1], self.input_hw[0]
        hm_wh = (w // STRIDE, h // STRIDE)
        mirrored = []
        for inst, c, s in zip(insts, batch["center"].numpy(), batch["scale"].numpy()):
            crop = CropParams(tuple(c), tuple(s), image_width=0)
            js = crop_joints(inst.joints, crop, (w, h), None)
            js[:, 0] = w - 1 - js[:, 0]  # the mirrored crop, joints swapped left/right
            mirrored.append(gaussian_targets(js[list(self.info.flip_index)], hm_wh, self.cfg.sigma,
                                            unbiased=self.cfg.unbiased_encoding)[0])
        return _OracleForward(batch["image"], batch["target"].numpy(), np.stack(mirrored))

    def _evaluate(self, forward_for: Callable, split: str, device, images: slice, out_dir,
                  dcfg: TopDownDecodeConfig, boxes: str | None = None) -> dict[str, float]:
        idx = self.index(split)
        ids = self.split_ids(split)
        ids = ids[images]
        rank, world = rank_and_world()
        insts = self.instances(split, ids[rank::world], boxes)
        results = self._infer(forward_for, idx, insts, device, dcfg) if insts else []
        if world > 1:
            parts: list = [None] * world
            dist.all_gather_object(parts, results)
            results = [r for p in parts for r in p]
        metrics: dict[str, float] = {}
        if rank == 0:
            gt = idx.subset(ids) if split == "search" else idx.coco
            metrics = evaluate_keypoints(gt, results, self.info.sigmas, self.metric, ids)
            metrics["images"] = float(len(ids))
            if out_dir:
                self._write_outputs(out_dir, split, idx, ids, results, metrics)
        if world > 1:
            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        return metrics

    def _infer(self, forward_for: Callable, idx: CocoKeypoints, insts: list[PersonInstance], device,
               dcfg: TopDownDecodeConfig) -> list[dict]:
        """Crops of ``insts`` in batches through ``forward_for(batch, batch_instances)`` -> COCO results."""
        ds = TopDownDataset(idx, insts, self.cfg, self.info, train=False)
        bs = self.cfg.inference.batch_size
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=False, collate_fn=collate,
                                             num_workers=loader_workers(self.cfg.workers) if len(ds) > bs else 0)
        coords, maxvals, meta = [], [], {"image_id": [], "score": [], "scale": []}
        for b, batch in enumerate(loader):
            hm = infer_heatmaps(forward_for(batch, insts[b * bs:(b + 1) * bs]), batch["image"].to(device),
                                self.info.flip_index, dcfg)
            c, m = decode_heatmaps(hm, batch["center"].numpy(), batch["scale"].numpy(), dcfg)
            coords.append(c)
            maxvals.append(m)
            for k in meta:
                meta[k].append(batch[k].numpy())
        meta = {k: np.concatenate(v) for k, v in meta.items()}
        return topdown_results(meta, np.concatenate(coords), np.concatenate(maxvals), dcfg, self.info.sigmas,
                               idx.category_id)

    def _write_outputs(self, out_dir: str, split: str, idx: CocoKeypoints, ids, results, metrics) -> None:
        os.makedirs(out_dir, exist_ok=True)
        atomic_write_json(os.path.join(out_dir, f"keypoints_{split}_results.json"), results, indent=None)
        atomic_write_json(os.path.join(out_dir, f"keypoints_{split}_metrics.json"), metrics)
        k = self.info.num_joints
        for iid in ids[:self.cfg.vis_images]:
            mine = [r for r in results if r["image_id"] == iid]
            kps = np.array([r["keypoints"] for r in mine], np.float64).reshape(-1, k, 3)
            save_overlay(os.path.join(out_dir, "vis", f"{split}_{iid}.png"), idx.load_image(iid), self.info, kps,
                         [r["score"] for r in mine], gt=gt_keypoints(idx.annotations(iid), k),
                         threshold=self.cfg.inference.rescore_threshold, min_score=DEFAULT_MIN_SCORE)

    # -- inference on one image -------------------------------------------------------------------
    def predict(self, forward: Callable, image_bgr, device: torch.device | str = "cpu", boxes=None, **kw) -> dict:
        """People in the given person ``boxes`` ([x, y, w, h] or [x, y, w, h, score] each); without boxes
        the whole image is one person (the result's ``note`` says so). One person per box, rescored as
        in evaluation (no OKS-NMS: the caller chose the boxes)."""
        if image_bgr is None or getattr(image_bgr, "ndim", 0) != 3 or image_bgr.shape[2] != 3:
            raise ScaleNASError(f"predict: expected an (H, W, 3) BGR image, got "
                                f"{getattr(image_bgr, 'shape', type(image_bgr).__name__)}")
        out: dict = {"keypoint_names": list(self.info.keypoints), "people": []}
        if boxes is None:
            h, w = image_bgr.shape[:2]
            boxes = [[0.0, 0.0, float(w), float(h)]]
            out["note"] = "no person boxes given: the whole image was treated as one person"
        boxes = [_check_box(b, i) for i, b in enumerate(boxes)]
        if not boxes:
            return out
        h, w = self.input_hw
        dcfg = self.decode_config()
        crops = [box_to_center_scale(b[:4], self.aspect_ratio, self.cfg.augment.box_padding) for b in boxes]
        images = np.stack([normalize(warp_image(image_bgr, CropParams(tuple(c), tuple(s)).matrix((w, h)), (w, h)))
                           for c, s in crops])
        hm = infer_heatmaps(forward, torch.from_numpy(images).to(device), self.info.flip_index, dcfg)
        coords, maxvals = decode_heatmaps(hm, np.stack([c for c, _ in crops]), np.stack([s for _, s in crops]), dcfg)
        scores = rescore(maxvals, np.array([b[4] for b in boxes]), dcfg.rescore_threshold)
        for b, xy, mv, s in zip(boxes, coords, maxvals, scores):
            kp = np.concatenate([xy, mv[:, None]], axis=1)
            out["people"].append({"keypoints": kp.round(3).tolist(), "score": float(s),
                                  "box": [round(float(v), 3) for v in b[:4]]})
        return out

    def visualise(self, image_bgr, prediction: dict, path: str, min_score: float | None = None) -> None:
        """Overlay of the people scoring at least ``min_score`` (default ``DEFAULT_MIN_SCORE``)."""
        people = prediction.get("people", [])
        kps = np.array([p["keypoints"] for p in people], np.float64).reshape(-1, self.info.num_joints, 3)
        save_overlay(path, image_bgr, self.info, kps, [p["score"] for p in people],
                     threshold=self.cfg.inference.rescore_threshold,
                     min_score=DEFAULT_MIN_SCORE if min_score is None else min_score)


def _check_box(b, i: int) -> list[float]:
    """A predict box -> [x, y, w, h, score] (score 1 when absent); one line naming the box when bad."""
    try:
        v = [float(x) for x in b]
    except (TypeError, ValueError):
        v = []
    if len(v) not in (4, 5) or not np.isfinite(v).all() or v[2] <= 0 or v[3] <= 0:
        raise ScaleNASError(f"predict: box {i} is {b!r}; expected [x, y, w, h] or [x, y, w, h, score] "
                            f"with w, h > 0")
    return v if len(v) == 5 else v + [1.0]
