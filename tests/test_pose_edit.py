"""Pose editing: joint sliders, turning, dragging a hand or foot by inverse kinematics."""

from __future__ import annotations

import numpy as np
import pytest

from omfa.pose.body import BODY_POSE_JOINTS, JOINT_NAMES, Pose
from omfa.pose.edit import MAIN_JOINTS, EditError, drag_limb, joint_degrees, set_joint, solve_limb, turn
from omfa.pose.presets import get_preset
from omfa.pose.render import project


def test_set_joint_writes_degrees_and_clamps() -> None:
    pose = set_joint(Pose.zero(), "left_shoulder", (10, -20, -60))
    row = BODY_POSE_JOINTS.index("left_shoulder")
    np.testing.assert_allclose(pose.body_pose[row], np.radians([10, -20, -60]))
    assert joint_degrees(pose, "left_shoulder") == pytest.approx((10, -20, -60))
    bent = set_joint(Pose.zero(), "left_knee", (200, 0, 0))  # beyond the range: clamped
    assert joint_degrees(bent, "left_knee")[0] == MAIN_JOINTS["left_knee"].x[1]
    with pytest.raises(EditError, match="unknown joint 'tail'; sliders exist for spine, chest"):
        set_joint(Pose.zero(), "tail", (0, 0, 0))


def test_turn_rotates_about_the_vertical(body) -> None:
    pose = get_preset("walking").pose
    turned = turn(pose, 90.0)
    np.testing.assert_allclose(turned.body_pose, pose.body_pose)
    before, after = body.posed(pose).joints, body.posed(turned).joints
    # Turning 90 degrees to its own left: the body's front (+z) now faces +x.
    np.testing.assert_allclose(after[:, 0], before[:, 2], atol=1e-4)
    np.testing.assert_allclose(after[:, 2], -before[:, 0], atol=1e-4)
    assert turn(turn(pose, 35.0), -35.0).allclose(pose, atol=1e-9)


@pytest.mark.parametrize(
    ("effector", "yaw", "offset"),
    [("left_hand", 0.0, (8.0, -20.0)), ("right_hand", 30.0, (-10.0, -12.0)), ("right_foot", 0.0, (-6.0, -10.0))],
)
def test_drag_limb_reaches_the_pixel(body, effector, yaw, offset) -> None:
    pose = get_preset("relaxed_stand").pose
    end = JOINT_NAMES.index({"left_hand": "left_wrist", "right_hand": "right_wrist"}.get(effector, "right_ankle"))
    start = project(body.posed(pose).joints[[end]], yaw, (128, 96))[0, :2]
    target = start + np.array(offset)
    moved = drag_limb(pose, effector, target, (128, 96), yaw, body=body)
    reached = project(body.posed(moved).joints[[end]], yaw, (128, 96))[0, :2]
    assert np.linalg.norm(reached - target) < 1.0  # pixels
    unchanged = [i for i, j in enumerate(BODY_POSE_JOINTS) if not j.startswith(effector.split("_")[0])]
    np.testing.assert_allclose(moved.body_pose[unchanged], pose.body_pose[unchanged])


def test_ik_respects_joint_limits_for_unreachable_targets(body) -> None:
    pose = Pose.zero()
    moved = solve_limb(pose, "left_hand", (3.0, 0.5, 0.0), body.rest_joints())  # 3 m away: out of reach
    shoulder = np.degrees(moved.body_pose[BODY_POSE_JOINTS.index("left_shoulder")])
    limits = MAIN_JOINTS["left_shoulder"].bounds()
    assert np.all(shoulder >= limits[:, 0] - 1e-6) and np.all(shoulder <= limits[:, 1] + 1e-6)
    elbow = np.degrees(moved.body_pose[BODY_POSE_JOINTS.index("left_elbow")])
    assert abs(elbow[1]) < 5 and elbow[0] == 0 and elbow[2] == 0  # arm stretched towards the target
    with pytest.raises(EditError, match="outside the 128x96 image"):
        drag_limb(pose, "left_hand", (200.0, 10.0), (128, 96), body=body)
    with pytest.raises(EditError, match="unknown effector 'nose'"):
        drag_limb(pose, "nose", (10.0, 10.0), (128, 96), body=body)
