import os

import pytest
import torch

from scalenas.utils.runtime import setup_process, torch_threads, usable_cores

# As every scalenas entry point does: malloc fix, OpenCV pinned to one thread (forked loader workers
# must not inherit an OpenCV thread pool). Tests use a fixed thread count.
# Under pytest-xdist (``make test`` runs one worker per core) each worker takes its share of the cores (at
# most 2 threads, as without workers), and the processes tests start (CLIs, torchrun) inherit the cap
# through OMP_NUM_THREADS, so workers never oversubscribe the cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
_SHARE = max(1, min(2, usable_cores() // _WORKERS))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(_SHARE)
setup_process(_SHARE)


#: The tests' tiny space: width 8, one module per stage, depths 1 and 2 (a few seconds to train).
TINY_SPACE = {"width": 8, "modules_per_stage": [1, 1, 1], "depth_choices": [1, 2], "stem_channels": 16,
              "stage1_blocks": 1}


def pytest_collection_modifyitems(items):
    """Modules with a ``slow`` test first, each module kept whole and in order (module fixtures are built
    once): under xdist a minutes-long test that starts last keeps one worker busy after the other is done."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch thread for a test module (its module-scoped fixtures included): tiny tensors and many
    small ops gain nothing from threads, and on a shared 2-core machine a second OpenMP thread spin-waits
    for a core another job holds. Opt in: ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_space_cfg() -> dict:
    """The ``space:`` config section of the tiny space, shared by the session: copy it before changing it."""
    return TINY_SPACE


# ---- pose data and pose supernet runs shared by tests/tasks and tests/deploy ---------------------------

#: a critter's joints relative to its centre, in units of its size (left parts on screen right); the order
#: of the K=7 custom keypoints: ear_left, ear_right, eye_left, eye_right, nose, paw_left, paw_right
K7_SHAPE = [[0.3, -0.45], [-0.3, -0.45], [0.15, -0.2], [-0.15, -0.2], [0, 0], [0.35, 0.45], [-0.35, 0.45]]


def _write_k7(root, n_train: int, n_val: int = 3, size: int = 128, seed: int = 0, box_pad: float = 0.0) -> None:
    """A custom K=7 COCO keypoint dataset under ``root`` (``train``/``val`` folders and ``.json`` files):
    critters of 30-50 px, one or two per image; boxes are the joints' extent grown by ``box_pad`` px.
    The keypoint description (info file) is the caller's."""
    import json

    import cv2
    import numpy as np

    shape = np.array(K7_SHAPE)
    rng = np.random.default_rng(seed)
    aid = 0
    for split, n in (("train", n_train), ("val", n_val)):
        os.makedirs(root / split, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            img = np.full((size, size, 3), rng.integers(60, 200, 3), np.uint8)
            iid = 500 + 10 * i + (split == "val")
            for _ in range(int(rng.integers(1, 3))):
                s = rng.uniform(30, 50)
                ctr = np.array([rng.uniform(30, 98), rng.uniform(30, 98)])
                pts = ctr + shape * s
                cv2.ellipse(img, tuple(int(v) for v in ctr), (int(s * 0.4), int(s * 0.5)), 0, 0, 360,
                            (40, 90, 160), -1)
                for j, (x, y) in enumerate(pts):
                    cv2.circle(img, (int(x), int(y)), 3, (255 - 30 * j, 30 * j, 128), -1)
                x0, y0 = pts.min(0) - box_pad
                x1, y1 = pts.max(0) + box_pad
                aid += 1
                anns.append({"id": aid, "image_id": iid, "category_id": 1, "iscrowd": 0, "num_keypoints": 7,
                             "area": float((x1 - x0) * (y1 - y0) * 0.6), "bbox": [x0, y0, x1 - x0, y1 - y0],
                             "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                             "keypoints": [round(float(v), 2) for v in np.c_[pts, np.full(7, 2.0)].ravel()]})
            cv2.imwrite(str(root / split / f"{split}_{i}.png"), img)
            images.append({"id": iid, "file_name": f"{split}_{i}.png", "height": size, "width": size})
        doc = {"images": images, "annotations": anns,
               "categories": [{"id": 1, "name": "critter", "keypoints": ["k"] * 7}]}
        (root / f"{split}.json").write_text(json.dumps(doc))


@pytest.fixture(scope="session")
def write_k7():
    """The K=7 custom-dataset writer (``write_k7(root, n_train, n_val=3, size=128, seed=0, box_pad=0)``)."""
    return _write_k7


#: split paths of ``scalenas.data.synth_pose.generate``'s layout
SYNTH_POSE_SPLIT = {"images": "images/{}", "annotations": "annotations/{}.json"}


def _pose_run_config(run_dir, task: dict, space: dict, train: dict, synth_splits=()) -> dict:
    """A supernet run config for a pose test: grouped sampling with the pose rule's smallest subnet
    unfused, Adam without weight decay, no checkpoints, progress or tensorboard; ``train`` overrides
    (its ``optimizer`` merged into Adam's). ``synth_splits`` get the synthetic generator's paths."""
    task = {**task, **{s: {k: v.format(s) for k, v in SYNTH_POSE_SPLIT.items()} for s in synth_splits}}
    opt = {"name": "adam", "weight_decay": 0.0, **train.get("optimizer", {})}
    return {"run_dir": str(run_dir), "seed": 0, "space": dict(space), "task": task,
            "sampler": {"kind": "grouped", "smallest_fusion": 0.0},
            "train": {"ckpt_every": 0, "progress": False, "tensorboard": False, **train, "optimizer": opt}}


@pytest.fixture(scope="session")
def pose_run_config():
    """``pose_run_config(run_dir, task, space, train, synth_splits=()) -> dict``: the shared shape of the
    pose supernet runs (tests/tasks end to end, tests/deploy)."""
    return _pose_run_config
