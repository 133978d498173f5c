"""Pose from a photo: a round trip through rendered presets, a real photograph, person counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from omfa.pose.body import JOINT_NAMES, MannequinBody, Pose, forward_kinematics
from omfa.pose.estimate import NoPersonError, SeveralPeopleError, estimate_pose
from omfa.pose.presets import load_presets

ROUND_TRIP_HW = (512, 384)


def aligned_joint_error(body: MannequinBody, estimated: Pose, truth: Pose) -> float:
    """Mean joint distance (metres) over the 22 body joints after the best rotation and shift."""
    rest = torch.tensor(body.rest_joints())

    def joints(pose: Pose) -> np.ndarray:
        return forward_kinematics(rest, torch.tensor(pose.global_orient), torch.tensor(pose.body_pose)).numpy()

    a, b = joints(estimated), joints(truth)
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)  # Kabsch: rotation taking a onto b
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.linalg.norm(a @ rotation.T - b, axis=1).mean())


def round_trip(body, renderer, name: str) -> float:
    preset = load_presets()[name]
    image = renderer.thumbnail(body.posed(preset.pose), 0.0, ROUND_TRIP_HW)
    return aligned_joint_error(body, estimate_pose(image, body=body).pose, preset.pose)


@pytest.mark.parametrize("name", ["t_pose", "hands_on_hips", "star_jump", "contrapposto"])
def test_round_trip_on_rendered_presets(body, renderer, name) -> None:
    assert round_trip(body, renderer, name) < 0.06  # metres


@pytest.mark.slow
def test_round_trip_over_all_presets(body, renderer) -> None:
    errors = {name: round_trip(body, renderer, name) for name in load_presets()}
    print({name: round(100 * e, 1) for name, e in errors.items()})
    assert np.mean(list(errors.values())) < 0.07  # 6.1 cm measured


def test_real_photograph(body) -> None:
    photo = data.astronaut()  # a half-length portrait, facing the camera, arms bent
    estimated = estimate_pose(photo, body=body)
    keypoints = estimated.keypoints_xy
    # BlazePose order: 11 / 12 are the left / right shoulder; her left is on the image right.
    assert keypoints[11, 0] > keypoints[12, 0]
    assert 100 < keypoints[11, 1] < 400 and 100 < keypoints[12, 1] < 400
    assert estimated.visibility[11] > 0.9 and 0.0 < estimated.confidence < 1.0
    mesh = body.posed(estimated.pose)
    # The fitted body faces the camera: its left shoulder is on +x, its chest towards +z.
    left, right = mesh.joints[JOINT_NAMES.index("left_shoulder")], mesh.joints[JOINT_NAMES.index("right_shoulder")]
    assert left[0] - right[0] > 0.25
    facing = np.cross(left - right, [0.0, 1.0, 0.0])  # (left - right) x up = the body's forward
    assert facing[2] > 0.8 * np.linalg.norm(facing)
    assert estimated.fit_error_deg < 15
    # The PIL path gives the same landmarks.
    from PIL import Image

    again = estimate_pose(Image.fromarray(photo), body=body)
    np.testing.assert_allclose(again.keypoints_xy, keypoints, atol=1e-3)


def test_person_count_errors() -> None:
    with pytest.raises(NoPersonError, match="no person found"):
        estimate_pose(data.coffee())
    two = np.concatenate([data.astronaut(), data.astronaut()], axis=1)
    with pytest.raises(SeveralPeopleError, match="2 people found in the photo; crop it"):
        estimate_pose(two)
    with pytest.raises(ValueError, match="dtype is float64"):
        estimate_pose(np.zeros((64, 64, 3)))
