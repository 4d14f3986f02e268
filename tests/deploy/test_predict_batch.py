"""``scalenas predict`` on a batch with unreadable images: the rest are predicted, each failure is one
line naming its file (no OpenCV warning), exit code 2; pose --min-score filters only the overlay."""
import json
import os

import cv2
import numpy as np


def _pose_model(pose_setup, tmp_path, h, *extra):
    ckpt, _, root = pose_setup
    (tmp_path / "arch.json").write_text(h.sample_arch(5, pose=True).to_json())
    out = tmp_path / "pose_model"
    assert h.cli("extract", ckpt, tmp_path / "arch.json", "-o", out, *h.CALIB, "--latency-iters", "0", *extra) == 0
    val = os.path.join(root, "images", "val")
    return out, [os.path.join(val, f) for f in sorted(os.listdir(val))]


def test_bad_images_are_reported_and_skipped(pose_setup, tmp_path, h, capfd):
    model, (good_a, good_b) = _pose_model(pose_setup, tmp_path, h)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(cv2.imencode(".png", np.full((32, 32, 3), 90, np.uint8))[1].tobytes()[:60])
    missing = tmp_path / "missing.png"
    capfd.readouterr()
    rc = h.cli("predict", model, good_a, corrupt, truncated, missing, good_b, "-o", tmp_path / "pred")
    out, err = capfd.readouterr()
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 4 and lines[-1] == "scalenas predict: 3 of 5 images failed"
    for line, path in zip(lines, (corrupt, truncated, missing)):
        assert line.startswith(f"scalenas predict: error: {path}: ")
    assert "truncated PNG" in lines[1] and "cannot read" in lines[2]
    stems = [os.path.splitext(os.path.basename(p))[0] for p in (good_a, good_b)]
    assert sorted(os.listdir(tmp_path / "pred")) == sorted(
        [f"{s}.json" for s in stems] + [f"{s}_overlay.png" for s in stems])
    assert out.count(" -> ") == 2


def test_min_score_keeps_every_detection_in_the_json(pose_setup, tmp_path, h, capsys):
    # the untrained net's heatmap peaks are tiny: a zero detection threshold makes it report people
    model, (img, _) = _pose_model(pose_setup, tmp_path, h, "--data", "inference.detection_threshold=0.0")
    stem = os.path.splitext(os.path.basename(img))[0]
    assert h.cli("predict", model, img, "-o", tmp_path / "all", "--min-score", "0") == 0
    assert h.cli("predict", model, img, "-o", tmp_path / "none", "--min-score", "1e9") == 0
    people_all = json.loads((tmp_path / "all" / f"{stem}.json").read_text())["prediction"]["people"]
    people_none = json.loads((tmp_path / "none" / f"{stem}.json").read_text())["prediction"]["people"]
    assert people_all == people_none and len(people_all) > 0
    # nothing passes the threshold: the overlay is the input image, pixel for pixel
    assert np.array_equal(cv2.imread(str(tmp_path / "none" / f"{stem}_overlay.png")), cv2.imread(img))
    assert not np.array_equal(cv2.imread(str(tmp_path / "all" / f"{stem}_overlay.png")), cv2.imread(img))


def test_min_score_is_refused_for_a_segmentation_model(synth_model_dir, tmp_path, h, capsys):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    assert h.cli("predict", synth_model_dir, img, "-o", tmp_path / "p", "--min-score", "0.3") == 2
    assert "--min-score applies to pose models" in capsys.readouterr().err
