"""A short CPU supernet run on the synthetic pose data through the engine (grouped sampling, BN
recalibration, flip-test decoding, tag grouping, pycocotools): the AP of the largest and smallest
subnets rises from ~0 untrained to clearly above it.

AP is measured on the 8 images the supernet trains on (the val split points at the training files),
with light augmentation (flip only): in the minutes a test may take, a W16 supernet learns to find
and group keypoints on images it has seen, not yet on unseen ones. Measured with one torch thread (as
under `make test`'s two workers): 8 images, 200 steps at lr 0.004: AP 0.0 -> 26.5 / 17.8 in 75 s;
250 steps 35.2 / 32.2; 150 steps 9.4 / 9.8; 120 steps at lr 0.005 1.7 / 1.3. The 16 images it used to
memorise needed 400 steps for 11.3 / 11.2 (163 s). Generalisation is the longer run in
`bench/task_supernet.py --task pose`, whose figures are in the README.
"""
import numpy as np
import pytest

from scalenas.data.synth_pose import generate
from quickrun import quick_supernet_run


@pytest.mark.slow
def test_short_pose_supernet_run_raises_ap_on_its_training_images(tmp_path, pose_run_config):
    data = tmp_path / "data"
    # medium and large people (38-122 px): tiny ones are not learnable at 128 px input in 200 steps
    generate(str(data), train=8, val=2, test=2, size=(128, 128), seed=0, heights=(0.3, 0.95))
    train = {"images": "images/train", "annotations": "annotations/train.json"}
    cfg = pose_run_config(
        tmp_path / "run",
        {"name": "pose-bottomup", "root": str(data), "train": train, "val": train, "keypoints": "coco",
         "input_size": 128, "workers": 0, "vis_images": 0,
         "augment": {"max_rotation": 0, "min_scale": 1.0, "max_scale": 1.0, "max_translate": 0, "flip_prob": 0.5}},
        {"width": 16, "modules_per_stage": [1, 1, 1], "depth_choices": [1, 2], "stem_channels": 16, "stage1_blocks": 1},
        {"steps": 200, "batch_size": 8, "workers": 0, "optimizer": {"lr": 0.004},
         "schedule": {"name": "poly", "warmup_steps": 5}})
    r = quick_supernet_run(cfg, calib_images=16)
    assert np.mean(r["losses"][-5:]) < 0.5 * np.mean(r["losses"][:5])
    for name in ("largest", "smallest"):
        assert r["before"][name] < 1.0, r
        assert r["after"][name] >= 5.0 and r["after"][name] > r["before"][name] + 4.0, r
