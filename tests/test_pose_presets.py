"""Pose presets: the shipped files, the schema check, and that each pose is what its name says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from omfa.pose.body import JOINT_NAMES, MannequinBody
from omfa.pose.presets import PosePreset, PresetError, get_preset, load_presets, read_preset, write_preset

EXPECTED = {
    "a_pose",
    "t_pose",
    "relaxed_stand",
    "contrapposto",
    "hands_on_hips",
    "arms_crossed",
    "walking",
    "runway_stride",
    "hand_in_pocket",
    "waving",
    "arms_raised",
    "pointing",
    "sitting_upright",
    "side_step",
    "three_quarter_turn",
    "back_view",
}


@pytest.fixture(scope="module")
def joints() -> dict[str, np.ndarray]:
    """Grounded joint positions (22, 3) of every preset."""
    body = MannequinBody()
    return {name: body.posed(preset.pose).joints for name, preset in load_presets().items()}


def J(joints: np.ndarray, name: str) -> np.ndarray:
    return joints[JOINT_NAMES.index(name)]


def test_shipped_presets_load() -> None:
    presets = load_presets()
    assert len(presets) >= 20 and set(presets) >= EXPECTED
    assert list(presets) == sorted(presets)
    assert get_preset("back_view").yaw_deg == 180.0
    assert get_preset("a_pose").label == "A-pose"
    with pytest.raises(PresetError, match="unknown pose preset 'moonwalk'; choose one of: a_pose, "):
        get_preset("moonwalk")


def test_presets_look_like_their_names(joints) -> None:
    up = lambda p, j: J(joints[p], j)[1]  # noqa: E731  (height of a joint)
    for side in ("left", "right"):
        assert abs(up("t_pose", f"{side}_wrist") - up("t_pose", f"{side}_shoulder")) < 0.1
        assert up("arms_raised", f"{side}_wrist") > up("arms_raised", "head") + 0.25
        hip, wrist = J(joints["hands_on_hips"], f"{side}_hip"), J(joints["hands_on_hips"], f"{side}_wrist")
        assert np.linalg.norm(wrist - hip) < 0.2
        assert up("sitting_upright", f"{side}_knee") > up("sitting_upright", f"{side}_hip") - 0.1
    a_drop = up("a_pose", "left_shoulder") - up("a_pose", "left_wrist")
    assert 0.25 < a_drop < 0.45  # arms at about 45 degrees
    assert up("waving", "right_wrist") > up("waving", "head") and up("waving", "left_wrist") < 1.0
    pointing = J(joints["pointing"], "right_wrist") - J(joints["pointing"], "right_shoulder")
    assert pointing[2] > 0.45 and abs(pointing[1]) < 0.15  # forward, at shoulder height
    left, right = J(joints["arms_crossed"], "left_wrist"), J(joints["arms_crossed"], "right_wrist")
    assert left[0] < 0.05 and right[0] > -0.05  # each hand crosses to the other side
    for stride in ("walking", "runway_stride"):
        assert J(joints[stride], "left_ankle")[2] - J(joints[stride], "right_ankle")[2] > 0.2
    step = J(joints["side_step"], "left_ankle")[0] - J(joints["side_step"], "right_ankle")[0]
    assert step > 0.45  # feet wide apart sideways


def test_schema_errors_name_file_and_field(tmp_path) -> None:
    good = get_preset("a_pose").to_json()

    def broken(**changes) -> str:
        data = {**good, **changes}
        data = {k: v for k, v in data.items() if v is not None}
        (tmp_path / "bad.json").write_text(json.dumps({**data, "name": "bad"}))
        with pytest.raises(PresetError) as error:
            read_preset(tmp_path / "bad.json")
        return str(error.value)

    assert broken(body_pose=good["body_pose"][:20]) == (
        "bad.json: field 'body_pose' has 20 rows; need 21 rows of 3 numbers"
    )
    assert "bad.json: field 'global_orient' is [0, 'x', 0]" in broken(global_orient=[0, "x", 0])
    assert "bad.json: missing field 'tags'" in broken(tags=None)
    assert "bad.json: unknown field 'pose'" in broken(pose=[])
    assert "row 3 turns by more than 180 degrees" in broken(
        body_pose=[[0, 0, 4.0] if i == 3 else r for i, r in enumerate(good["body_pose"])]
    )
    assert "field 'yaw_deg' must be a number" in broken(yaw_deg="front")
    (tmp_path / "broken.json").write_text("{ not json")
    with pytest.raises(PresetError, match="broken.json: not valid JSON"):
        read_preset(tmp_path / "broken.json")


def test_folder_checks_names_and_round_trips(tmp_path) -> None:
    preset = get_preset("contrapposto")
    write_preset(preset, tmp_path / "contrapposto.json")
    loaded = load_presets(tmp_path)["contrapposto"]
    assert loaded.pose.allclose(preset.pose, atol=1e-6) and loaded.tags == preset.tags
    write_preset(PosePreset("other", ("x",), preset.pose), tmp_path / "mismatch.json")
    with pytest.raises(PresetError, match=r"mismatch.json: field 'name' is 'other' but the file is 'mismatch'"):
        load_presets(tmp_path)
    with pytest.raises(PresetError, match="does not exist"):
        load_presets(tmp_path / "missing")
