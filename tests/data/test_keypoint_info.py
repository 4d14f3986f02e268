import json

import pytest

from scalenas.data.keypoint_info import (KeypointInfo, check_flip_index, coco, crowdpose, flip_index_from_pairs,
                                         get_keypoint_info, load_keypoint_info)
from scalenas.errors import ScaleNASError

QUOKKA_YAML = """\
name: quokka
keypoints: [ear_tip_left, ear_tip_right, eye_left, eye_right, nose, paw_left, paw_right]
flip_pairs: [[ear_tip_left, ear_tip_right], [eye_left, eye_right], [paw_left, paw_right]]
sigmas: [0.05, 0.05, 0.03, 0.03, 0.03, 0.08, 0.08]
skeleton: [[ear_tip_left, eye_left], [ear_tip_right, eye_right], [eye_left, nose], [eye_right, nose]]
joint_order: [nose, eye_left, eye_right, ear_tip_left, ear_tip_right, paw_left, paw_right]
"""


def test_builtin_coco():
    info = coco()
    assert info.num_joints == 17
    assert list(info.flip_index) == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert info.sigmas[0] == pytest.approx(0.026) and info.sigmas[11] == pytest.approx(0.107)
    assert sorted(info.joint_order) == list(range(17)) and info.joint_order[:3] == (0, 1, 2)
    assert len(info.skeleton) == 19 and len(info.colors) == 17
    # left joints and right joints get different colours, so overlays show the side
    assert info.colors[5] != info.colors[6]


def test_builtin_crowdpose_flip_index():
    info = crowdpose()
    assert info.num_joints == 14
    assert list(info.flip_index) == [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13]
    assert info.keypoints[12:] == ("head", "neck")
    assert get_keypoint_info("CrowdPose") == info


def test_custom_yaml_k7(tmp_path):
    p = tmp_path / "quokka.yaml"
    p.write_text(QUOKKA_YAML)
    info = get_keypoint_info(str(p))
    assert info.num_joints == 7 and info.name == "quokka"
    assert list(info.flip_index) == [1, 0, 3, 2, 4, 6, 5]
    assert info.joint_order[0] == 4
    assert (2, 4) in info.skeleton
    # round trip through plain data
    again = KeypointInfo.from_dict(info.to_dict())
    assert again == info


def test_custom_json_relative_to_base_dir_and_default_sigmas(tmp_path):
    (tmp_path / "info.json").write_text(json.dumps({"keypoints": ["a", "b", "c"], "flip_index": [1, 0, 2]}))
    info = get_keypoint_info("info.json", base_dir=str(tmp_path))
    assert info.sigmas == (0.05, 0.05, 0.05) and info.name == "info"


def test_inline_mapping():
    info = get_keypoint_info({"name": "pair", "keypoints": ["l", "r"], "flip_pairs": [[0, 1]]})
    assert list(info.flip_index) == [1, 0]


def test_flip_pairs_not_a_permutation_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("keypoints: [a, b, c]\nflip_pairs: [[a, b], [b, c]]\n")
    with pytest.raises(ScaleNASError, match=r"bad\.yaml.*permutation"):
        load_keypoint_info(str(p))


def test_flip_index_not_a_permutation_names_the_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"keypoints": ["a", "b", "c"], "flip_index": [1, 1, 2]}))
    with pytest.raises(ScaleNASError, match=r"bad\.json.*not a permutation"):
        load_keypoint_info(str(p))


def test_flip_index_must_be_symmetric():
    with pytest.raises(ScaleNASError, match="not symmetric"):
        check_flip_index([1, 2, 0], 3)
    with pytest.raises(ScaleNASError, match="3 entries but there are 4"):
        check_flip_index([0, 1, 2], 4)
    with pytest.raises(ScaleNASError, match="itself"):
        flip_index_from_pairs([(1, 1)], 3)


@pytest.mark.parametrize("text, msg", [
    ("{not json", "invalid keypoint info file"),
    (json.dumps({"keypoints": ["a", "b"], "sigmas": [0.1]}), "sigmas has 1 values but there are 2"),
    (json.dumps({"keypoints": ["a", "b"], "flip_pairs": [["a", "z"]]}), "unknown keypoint name 'z'"),
    (json.dumps({"keypoints": ["a", "b"], "skeleton": [[0, 5]]}), r"skeleton edge \(0, 5\)"),
    (json.dumps({"keypoints": ["a", "b"], "colour": []}), r"unknown key\(s\) \['colour'\]"),
    (json.dumps({"keypoints": []}), "non-empty list"),
])
def test_bad_info_files(tmp_path, text, msg):
    p = tmp_path / "info.json"
    p.write_text(text)
    with pytest.raises(ScaleNASError, match=msg) as e:
        load_keypoint_info(str(p))
    assert "info.json" in str(e.value)


def test_unknown_spec():
    with pytest.raises(ScaleNASError, match="neither a builtin"):
        get_keypoint_info("mpii")
