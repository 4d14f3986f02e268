"""Bottom-up multi-person pose (HigherHRNet pipeline) as a ``Task``: COCO-format data, random-affine
augmentation, heatmap + associative-embedding targets and loss, grouping decoder, OKS AP.

Splits: ``train``, ``val``, ``test`` come from the config; ``search`` is ``search_holdout`` training
images held out (a deterministic draw) so the architecture search ranks subnets on images the supernet
never trained on, with their annotations, so AP can be computed on them.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Literal

import numpy as np
import torch
import torch.distributed as dist
from pydantic import Field, field_validator, model_validator
from torch.utils.data import Dataset

from scalenas.config import Strict
from scalenas.data.coco_keypoints import CocoKeypoints
from scalenas.data.keypoint_info import KeypointInfo, get_keypoint_info
from scalenas.data.pose_transforms import apply_sample_affine, center_affine, normalize, sample_affine
from scalenas.errors import ScaleNASError
from scalenas.space.heads import HeadSpec
from scalenas.tasks.base import TASKS, Task, eval_slice
from scalenas.tasks.pose_decode import DecodeConfig, People, coco_results, decode_image
from scalenas.tasks.pose_eval import evaluate_keypoints, require_xtcocotools
from scalenas.tasks.pose_losses import bottomup_loss
from scalenas.tasks.pose_splits import KeypointSplits, PoseDataConfig, collate, multiples_of_32
from scalenas.tasks.pose_targets import MAX_NUM_PEOPLE, build_targets
from scalenas.utils.runtime import loader_workers, rank_and_world
from scalenas.tasks.pose_targets import OracleForward
from scalenas.utils.io import atomic_write_json
from scalenas.viz.pose_overlay import DEFAULT_MIN_SCORE, gt_keypoints, save_overlay


class AugmentConfig(Strict):
    """HigherHRNet's random affine + flip (tasks.md §1.5)."""

    max_rotation: float = Field(30.0, ge=0)
    min_scale: float = Field(0.75, gt=0)
    max_scale: float = Field(1.5, gt=0)
    max_translate: float = Field(40.0, ge=0)
    flip_prob: float = Field(0.5, ge=0, le=1)
    scale_type: Literal["short", "long"] = "short"

    @model_validator(mode="after")
    def _order(self):
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale {self.min_scale} > max_scale {self.max_scale}")
        return self


class LossConfig(Strict):
    heatmap_factors: tuple[float, float] = (1.0, 1.0)
    push_factor: float = Field(1e-3, ge=0)
    pull_factor: float = Field(1e-3, ge=0)
    ae_type: Literal["exp", "max"] = "exp"
    #: heatmap-loss weight of pixels outside every joint's Gaussian window: 1 as HigherHRNet, 0.1 as DEKR
    background_weight: float = Field(1.0, gt=0, le=1)
    #: "mse" (HigherHRNet) or "focal" (CenterNet's penalty-reduced focal loss; the heatmap channels are then
    #: logits, which the decoder turns into probabilities, so its thresholds keep their meaning)
    heatmap: Literal["mse", "focal"] = "mse"

    @model_validator(mode="after")
    def _one_weighting(self):
        if self.heatmap == "focal" and self.background_weight != 1.0:
            raise ValueError("background_weight applies to the mse heatmap loss; the focal loss weights "
                             "pixels itself (leave background_weight at 1.0)")
        return self


class InferenceConfig(Strict):
    """Test-time settings (tasks.md §1.7); the HigherHRNet released configs use these defaults."""

    flip: bool = True
    scales: list[float] = [1.0]
    project_to_image: bool = True
    nms_kernel: int = Field(5, ge=1)
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    use_detection_val: bool = True
    ignore_too_much: bool = False
    adjust: bool = True
    refine: bool = True

    @field_validator("scales")
    @classmethod
    def _scales(cls, v):
        if not v or any(s <= 0 for s in v):
            raise ValueError("scales must be a non-empty list of positive numbers")
        return v

    @field_validator("nms_kernel")
    @classmethod
    def _odd(cls, v):
        if v % 2 == 0:
            raise ValueError("nms_kernel must be odd (the window is centred on the pixel)")
        return v


class BottomUpPoseConfig(PoseDataConfig):
    name: Literal["pose-bottomup"] = "pose-bottomup"
    input_size: int = Field(512, ge=64)
    sigma: float = Field(2.0, gt=0)
    max_people: int = Field(MAX_NUM_PEOPLE, ge=1)
    num_deconv_blocks: int = Field(4, ge=0)
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    inference: InferenceConfig = InferenceConfig()

    @field_validator("input_size")
    @classmethod
    def _mult32(cls, v):
        multiples_of_32("input_size", (v,))
        return v


class PoseDataset(Dataset):
    """Samples: ``image`` (3, S, S) float32, ``heatmaps_0`` (K, S/4, S/4), ``heatmaps_1`` (K, S/2, S/2),
    ``mask_0``/``mask_1`` (ignore masks), ``joints`` (M, K, 2) int64 at 1/4, ``image_id``.
    ``train`` draws a random affine + flip per sample (from torch's RNG, so workers differ and runs
    repeat under ``torch.manual_seed``); otherwise a fixed centred square crop."""

    def __init__(self, index: CocoKeypoints, ids: list[int], cfg: BottomUpPoseConfig, info: KeypointInfo,
                 train: bool):
        self.index, self.ids, self.cfg, self.info, self.train = index, list(ids), cfg, info, train
        s = cfg.input_size
        self.sizes = (s // 4, s // 2)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        iid = self.ids[i]
        img = self.index.load_image(iid)
        joints = self.index.people(iid)
        mask = self.index.ignore_mask(iid, img.shape[:2])
        a = self.cfg.augment
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,))))
            params = sample_affine(rng, img.shape[:2], a.max_rotation, a.min_scale, a.max_scale,
                                   a.max_translate, a.flip_prob, a.scale_type)
        else:
            params = center_affine(img.shape[:2], a.scale_type)
        image, js, ms = apply_sample_affine(params, img, joints, mask, self.cfg.input_size, self.sizes,
                                            self.info.flip_index)
        out = build_targets(js, ms, self.sizes, self.cfg.sigma, self.cfg.max_people)
        out["image"] = normalize(image)
        out["image_id"] = np.int64(iid)
        return out


def _identity(x):
    return x


class _Images(Dataset):
    def __init__(self, index: CocoKeypoints, ids: list[int]):
        self.index, self.ids = index, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        return self.ids[i], self.index.load_image(self.ids[i])


@TASKS.register
class BottomUpPoseTask(KeypointSplits, Task):
    Config = BottomUpPoseConfig
    name = "pose-bottomup"
    metric_name = "AP"

    def __init__(self, cfg: BottomUpPoseConfig):
        self.cfg = cfg
        self.info = get_keypoint_info(cfg.keypoints, cfg.root or None)
        self.metric = cfg.metric or ("crowdpose" if self.info.name == "crowdpose" else "coco")
        self._indexes: dict[str, CocoKeypoints] = {}
        self._holdout: list[int] | None = None

    def check_dependencies(self) -> None:
        if self.metric == "crowdpose":
            require_xtcocotools()

    # -- description ------------------------------------------------------------------------------
    @property
    def head(self) -> HeadSpec:
        return HeadSpec(kind="pose-bottomup", num_joints=self.info.num_joints,
                        num_deconv_blocks=self.cfg.num_deconv_blocks)

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.cfg.input_size, self.cfg.input_size

    @property
    def output_sizes(self) -> tuple[int, int]:
        return self.cfg.input_size // 4, self.cfg.input_size // 2

    def decode_config(self) -> DecodeConfig:
        t = self.cfg.inference
        return DecodeConfig(input_size=self.cfg.input_size, scales=tuple(t.scales), flip=t.flip,
                            project_to_image=t.project_to_image, nms_kernel=t.nms_kernel,
                            max_people=self.cfg.max_people, detection_threshold=t.detection_threshold,
                            tag_threshold=t.tag_threshold, use_detection_val=t.use_detection_val,
                            ignore_too_much=t.ignore_too_much, adjust=t.adjust, refine=t.refine,
                            focal=self.cfg.loss.heatmap == "focal")

    # -- data -------------------------------------------------------------------------------------
    def build_dataset(self, split: str, train: bool = False) -> Dataset:
        return PoseDataset(self.index(split), self.split_ids(split), self.cfg, self.info, train)

    def collate(self, samples: list[dict]) -> dict:
        return collate(samples)

    # -- training ---------------------------------------------------------------------------------
    def loss(self, outputs, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        lc = self.cfg.loss
        return bottomup_loss(outputs, batch, self.info.num_joints, lc.heatmap_factors, lc.push_factor,
                             lc.pull_factor, lc.ae_type, lc.background_weight, lc.heatmap)

    # -- inference --------------------------------------------------------------------------------
    def decode(self, forward: Callable, image_bgr: np.ndarray, device: torch.device | str = "cpu",
               cfg: DecodeConfig | None = None) -> People:
        return decode_image(forward, image_bgr, self.info.num_joints, self.info.flip_index, self.info.joint_order,
                            cfg or self.decode_config(), device)

    def predict(self, forward: Callable, image_bgr, device: torch.device | str = "cpu", **kw) -> dict:
        if image_bgr is None or getattr(image_bgr, "ndim", 0) != 3 or image_bgr.shape[2] != 3:
            raise ScaleNASError(f"predict: expected an (H, W, 3) BGR image, got "
                                f"{getattr(image_bgr, 'shape', type(image_bgr).__name__)}")
        people = self.decode(forward, image_bgr, device)
        return {"keypoint_names": list(self.info.keypoints),
                "people": [{"keypoints": kp.round(3).tolist(), "score": float(s)}
                           for kp, s in zip(people.keypoints, people.scores)]}

    def visualise(self, image_bgr, prediction: dict, path: str, min_score: float | None = None) -> None:
        """Overlay of the people scoring at least ``min_score`` (default ``DEFAULT_MIN_SCORE``)."""
        people = prediction.get("people", [])
        kps = np.array([p["keypoints"] for p in people], np.float64).reshape(-1, self.info.num_joints, 3)
        save_overlay(path, image_bgr, self.info, kps, [p["score"] for p in people],
                     threshold=self.cfg.inference.detection_threshold,
                     min_score=DEFAULT_MIN_SCORE if min_score is None else min_score)

    def evaluate(self, model: torch.nn.Module, split: str, device: torch.device | str = "cpu",
                 max_images: int | None = None, out_dir: str | None = None, *,
                 first_image: int = 0) -> dict[str, float]:
        """Decode every image of ``split`` (``max_images`` from ``first_image``) and compute OKS AP on them.
        Under torch.distributed each rank decodes a shard; results are gathered before COCOeval."""
        was_training = model.training
        model.eval()
        try:
            return self._evaluate(lambda iid, img: model, split, device, eval_slice(max_images, first_image), out_dir)
        finally:
            model.train(was_training)

    def evaluate_oracle(self, split: str, max_images: int | None = None, out_dir: str | None = None,
                        flip: bool | None = None) -> dict[str, float]:
        """AP of a perfect network (outputs rendered from the ground truth, see ``OracleForward``): the
        ceiling the decoder and this input size allow on ``split``; far below 100 means a decoder or
        data problem (or people too small for the input size)."""
        idx = self.index(split)
        cfg = self.decode_config()
        if flip is not None:
            cfg = dataclasses.replace(cfg, flip=flip)
        return self._evaluate(lambda iid, img: OracleForward(idx.people(iid), img.shape[:2], self.info.flip_index,
                                                             cfg.input_size, cfg.scales, self.cfg.sigma, cfg.stride,
                                                             cfg.focal),
                              split, "cpu", eval_slice(max_images), out_dir, cfg)

    def evaluate_attribution(self, model: torch.nn.Module, split: str, device: torch.device | str = "cpu",
                             max_images: int | None = None) -> dict[str, float]:
        """Which half of the bottom-up output limits AP: ``model``'s AP on ``split`` as it is, with the
        ground truth's tags in place of its own (``AP_true_tags``: its heatmaps decide), with the ground
        truth's heatmaps in place of its own (``AP_true_heatmaps``: its tags decide), and the perfect
        network's (``AP_oracle``, the ceiling). Ground-truth parts are ``OracleForward``'s renderings."""
        idx = self.index(split)
        cfg = self.decode_config()
        k = self.info.num_joints
        was_training = model.training
        model.eval()
        # the model's outputs per image, in call order (scales, flips): the first pass runs the model, the
        # two mixed passes replay them, as the decoder feeds each pass the same inputs
        outputs: dict[int, list] = {}

        def recorded(iid, img):
            def forward(x):
                y = model(x)
                outputs.setdefault(iid, []).append(y[:2])
                return y
            return forward

        def mixed(keep: str) -> Callable:
            def forward_for(iid, img):
                oracle = OracleForward(idx.people(iid), img.shape[:2], self.info.flip_index, cfg.input_size,
                                       cfg.scales, self.cfg.sigma, cfg.stride, cfg.focal)
                replay = iter(outputs[iid])

                def forward(x):
                    y4, y2 = next(replay)
                    o4, o2 = (o.to(y4.device, y4.dtype) for o in oracle(x))
                    if keep == "heatmaps":      # the model's heatmaps, the true tags
                        return torch.cat([y4[:, :k], o4[:, k:]], 1), y2
                    return torch.cat([o4[:, :k], y4[:, k:2 * k]], 1), o2   # the true heatmaps, the model's tags
                return forward
            return forward_for

        try:
            images = eval_slice(max_images)
            out = {"AP": self._evaluate(recorded, split, device, images, None)["AP"],
                   "AP_true_tags": self._evaluate(mixed("heatmaps"), split, device, images, None)["AP"],
                   "AP_true_heatmaps": self._evaluate(mixed("tags"), split, device, images, None)["AP"]}
        finally:
            model.train(was_training)
        out["AP_oracle"] = self.evaluate_oracle(split, max_images)["AP"]
        return out

    def _evaluate(self, forward_for: Callable, split: str, device, images: slice, out_dir,
                  dcfg: DecodeConfig | None = None) -> dict[str, float]:
        idx = self.index(split)
        ids = self.split_ids(split)
        ids = ids[images]
        rank, world = rank_and_world()
        results, vis = [], 0
        # images are read (and JPEG-decoded) by loader workers while this process decodes poses
        loader = torch.utils.data.DataLoader(_Images(idx, ids[rank::world]), batch_size=None, collate_fn=_identity,
                                             num_workers=loader_workers(self.cfg.workers) if len(ids) > 1 else 0)
        for iid, img in loader:
            people = self.decode(forward_for(iid, img), img, device, dcfg)
            results += coco_results(people, iid, idx.category_id)
            if out_dir and rank == 0 and vis < self.cfg.vis_images:
                self._overlay(out_dir, split, idx, iid, img, people)
                vis += 1
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
                os.makedirs(out_dir, exist_ok=True)
                atomic_write_json(os.path.join(out_dir, f"keypoints_{split}_results.json"), results, indent=None)
                atomic_write_json(os.path.join(out_dir, f"keypoints_{split}_metrics.json"), metrics)
        if world > 1:
            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        return metrics

    def _overlay(self, out_dir, split, idx: CocoKeypoints, iid, img, people: People) -> None:
        gt = gt_keypoints(idx.annotations(iid), self.info.num_joints)
        save_overlay(os.path.join(out_dir, "vis", f"{split}_{iid}.png"), img, self.info, people.keypoints,
                     people.scores, gt=gt, threshold=self.cfg.inference.detection_threshold)
