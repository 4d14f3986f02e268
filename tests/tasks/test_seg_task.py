"""SegmentationTask end to end on tiny on-the-fly data: config, splits, loss, evaluate, predict, overlays."""
import json
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scalenas.data.seg_transforms import normalize
from scalenas.data.synth_seg import generate
from scalenas.errors import ScaleNASError
from scalenas.tasks import TASKS
from scalenas.viz.seg_overlay import colorize, overlay, render

PALETTE = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]], np.uint8)  # BGR


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("seg") / "synth")
    generate(root, train=8, val=3, test=1, size=(256, 256), seed=0)
    return root


@pytest.fixture(scope="module")
def blocks_root(tmp_path_factory):
    """Colour blocks whose class is their colour (72x100: not a multiple of 32)."""
    root = tmp_path_factory.mktemp("blocks")
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 2)):
        os.makedirs(root / "images" / split)
        os.makedirs(root / "masks" / split)
        for i in range(n):
            label = np.kron(rng.integers(0, 4, (6, 10)), np.ones((12, 10), np.int64)).astype(np.uint8)
            label[-6:, :20] = 255
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), PALETTE[np.minimum(label, 3)])
            cv2.imwrite(str(root / "masks" / split / f"{i}.png"), label)
    (root / "dataset_info.json").write_text(json.dumps({"name": "blocks", "classes": ["r", "g", "b", "y"]}))
    return str(root)


def make_task(root, **kw):
    cfg = {"name": "segmentation", "format": "folder", "root": root, "crop_size": [128, 128], "base_size": None,
           "scale_range": [0.75, 1.25], "workers": 0, "vis_images": 2} | kw
    return TASKS.get("segmentation").from_config(cfg)


class LookupModel(nn.Module):
    """Outputs full-resolution one-hot logits of the ground truth of whichever eval image it is fed."""

    def __init__(self, dataset, num_classes):
        super().__init__()
        self.samples = [dataset[i] for i in range(len(dataset))]
        self.C = num_classes
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = []
        for xi in x:
            s = next(s for s in self.samples if s["image"].shape == xi.shape and torch.equal(s["image"], xi))
            lab = s["label"].long().masked_fill(s["label"] == 255, 0)
            out.append(F.one_hot(lab, self.C).permute(2, 0, 1).float() * 10)
        return torch.stack(out)


class ColourModel(nn.Module):
    """Per-pixel nearest palette colour, at 1/4 resolution when ``quarter`` (like the real head)."""

    def __init__(self, quarter=False):
        super().__init__()
        self.register_buffer("centres", torch.from_numpy(normalize(PALETTE[None])[:, 0]))  # (3, K)
        self.quarter = quarter
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        d = ((x[:, :, None] - self.centres[None, :, :, None, None]) ** 2).sum(1)
        logits = -10 * d
        return F.avg_pool2d(logits, 4) if self.quarter else logits


def test_config_errors(synth_root):
    with pytest.raises(ScaleNASError, match=r"task\.crop_szie: unknown key"):
        make_task(synth_root, crop_szie=[64, 64])
    with pytest.raises(ScaleNASError, match="task: .*crop_size .*multiples of 32"):
        make_task(synth_root, crop_size=[100, 128])
    with pytest.raises(ScaleNASError, match=r"task\.test_mode"):
        make_task(synth_root, test_mode="tta")
    with pytest.raises(ScaleNASError, match="task.class_weights: dataset synth-seg defines no class_weights"):
        make_task(synth_root, class_weights=True)
    with pytest.raises(ScaleNASError, match="task.root: dataset folder .*nowhere not found"):
        make_task(synth_root + "/nowhere")


def test_search_holdout_split(synth_root):
    task = make_task(synth_root, search_holdout=3)
    train = [it.name for it in task.items("train")]
    search = [it.name for it in task.items("search")]
    assert len(search) == 3 and len(train) == 5 and not set(train) & set(search)
    assert [it.name for it in make_task(synth_root, search_holdout=3).items("search")] == search  # deterministic
    assert len(task.build_dataset("search", train=False)) == 3
    with pytest.raises(ScaleNASError, match="split 'search' is empty: set task.search_holdout"):
        make_task(synth_root).build_dataset("search", train=False)
    with pytest.raises(ScaleNASError, match="task.search_holdout: 8 held-out images leave none"):
        make_task(synth_root, search_holdout=8).items("train")


def test_train_batch_and_loss(synth_root):
    task = make_task(synth_root, ohem=True, ohem_min_kept=1000)
    assert task.head.kind == "seg" and task.head.num_classes == 7
    ds = task.build_dataset("train", train=True)
    batch = task.collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 128, 128) and batch["label"].shape == (2, 128, 128)
    logits = torch.randn(2, 7, 32, 32, requires_grad=True)
    loss, parts = task.loss(logits, batch)
    loss.backward()
    assert set(parts) == {"ce", "ohem_kept"} and parts["ce"] == pytest.approx(loss.item())
    with pytest.raises(ScaleNASError, match="images of different sizes"):
        task.collate([ds[0], task.build_dataset("val", train=False)[0]])


def test_evaluate_ground_truth_model_scores_100(synth_root, tmp_path):
    task = make_task(synth_root, eval_batch_size=2)
    model = LookupModel(task.build_dataset("val", train=False), 7)
    m = task.evaluate(model, "val", out_dir=str(tmp_path))
    assert m["mIoU"] == pytest.approx(100) and m["pixel_acc"] == pytest.approx(100)
    for k in ("iou_small", "iou_medium", "iou_large"):
        assert m[k] == pytest.approx(100), k
    assert all(m[f"IoU.{c}"] == pytest.approx(100) for c in task.class_names)
    assert m["images"] == 3
    assert sorted(os.listdir(tmp_path)) == ["val_00000.png", "val_00001.png"]  # vis_images = 2
    vis = cv2.imread(str(tmp_path / "val_00000.png"))
    assert vis.shape[1] == 2 * 256 + 4  # prediction | GT side by side


def test_evaluate_images_from_first_image(synth_root):
    """``first_image`` scores a later part of the split: a model that knows only images 1 and 2 scores
    100 on them (fed image 0 it would fail to find it)."""
    task = make_task(synth_root, eval_batch_size=2)
    ds = task.build_dataset("val", train=False)
    m = task.evaluate(LookupModel([ds[1], ds[2]], 7), "val", max_images=5, first_image=1)
    assert m["mIoU"] == pytest.approx(100) and m["images"] == 2
    assert task.evaluate(LookupModel([ds[2]], 7), "val", first_image=2)["images"] == 1


def test_evaluate_flip_and_multiscale_modes(blocks_root):
    task = make_task(blocks_root, test_mode="flip")
    assert task.evaluate(ColourModel(), "val")["mIoU"] == pytest.approx(100)
    model = ColourModel()
    m = make_task(blocks_root, test_mode="multiscale", crop_size=[64, 64], test_scales=[0.5, 1.0, 1.5]).evaluate(
        model, "val", max_images=1)
    assert m["mIoU"] > 95 and m["images"] == 1
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in model.seen)
    assert (64, 64) in model.seen  # scale 1.5 ran as 64x64 sliding windows


def test_evaluate_quarter_resolution_logits(blocks_root):
    model = ColourModel(quarter=True)
    model.train()
    m = make_task(blocks_root).evaluate(model, "val")
    assert m["mIoU"] > 90 and model.training  # the mode is restored
    with pytest.raises(ScaleNASError, match="no masks"):
        os.makedirs(os.path.join(blocks_root, "images", "test"), exist_ok=True)
        cv2.imwrite(os.path.join(blocks_root, "images", "test", "0.png"), PALETTE[np.zeros((8, 8), np.intp)])
        make_task(blocks_root).evaluate(model, "test")


def test_evaluate_real_scalenet(blocks_root):
    from scalenas.nets import ScaleNet
    from scalenas.space import SearchSpace

    task = make_task(blocks_root, eval_batch_size=2)
    space = SearchSpace(width=8, modules_per_stage=(1, 1, 1), stem_channels=16, stage1_blocks=1)
    net = ScaleNet(space, space.hrnet(), task.head).to(memory_format=torch.channels_last)
    m = task.evaluate(net, "val")
    assert 0 <= m["mIoU"] <= 100 and {"pixel_acc", "mean_acc", "iou_small", "iou_medium", "iou_large"} <= set(m)


def test_predict_and_visualise(blocks_root, tmp_path):
    task = make_task(blocks_root)
    image = cv2.imread(os.path.join(blocks_root, "images", "val", "0.png"))
    model = ColourModel()
    pred = task.predict(model, image)
    assert model.seen == [(96, 128)]  # padded to multiples of 32, cropped back
    truth = cv2.imread(os.path.join(blocks_root, "masks", "val", "0.png"), cv2.IMREAD_UNCHANGED)
    assert pred["mask"].shape == (72, 100) and (pred["mask"][truth != 255] == truth[truth != 255]).all()
    assert sum(pred["class_pixels"].values()) == 72 * 100
    json.dumps({k: v for k, v in pred.items() if k != "mask"})
    task.visualise(image, pred, str(tmp_path / "p.png"))
    assert cv2.imread(str(tmp_path / "p.png")).shape[:2][1] == 100


def test_overlay_helpers():
    mask = np.array([[0, 1], [255, 1]], np.uint8)
    col = colorize(mask, [(255, 0, 0), (0, 0, 255)])
    assert col[0, 0].tolist() == [0, 0, 255] and col[0, 1].tolist() == [255, 0, 0] and col[1, 0].tolist() == [0, 0, 0]
    image = np.full((2, 2, 3), 100, np.uint8)
    ov = overlay(image, mask, [(255, 0, 0), (0, 0, 255)], alpha=0.5)
    assert ov[1, 0].tolist() == [100, 100, 100]  # ignore keeps the image
    assert ov[0, 0].tolist() == [50, 50, 178] or ov[0, 0].tolist() == [50, 50, 177]
    out = render(image, mask, [(255, 0, 0), (0, 0, 255)], gt=mask, class_names=["a", "b"])
    assert out.shape[1] == 2 + 4 + 2 and out.shape[0] > 2


@pytest.mark.parametrize("name", ["seg_synth.yaml", "cityscapes.yaml"])
def test_shipped_task_configs_validate(name):
    import yaml

    from scalenas.config import validate_section
    from scalenas.tasks.segmentation import SegConfig

    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tasks", name)
    data = yaml.safe_load(open(path))
    assert list(data) == ["task"]
    cfg = validate_section(SegConfig, data["task"], "task")
    if name == "cityscapes.yaml":
        assert (cfg.crop_size, cfg.base_size, cfg.scale_range) == ((512, 1024), 2048, (0.5, 2.0))
        assert (cfg.ohem, cfg.ohem_thresh, cfg.ohem_min_kept, cfg.class_weights) == (True, 0.9, 131072, True)
