"""Posed bodies: pose validation, the mannequin backend, kinematics, the SMPL-X wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omfa.pose.body import (
    JOINT_NAMES,
    PART_NAMES,
    BodyModelError,
    MannequinBody,
    Pose,
    PoseError,
    SMPLXBody,
    forward_kinematics,
    load_body,
)
from omfa.pose.edit import set_joint


def test_pose_validates_shapes_and_values() -> None:
    with pytest.raises(PoseError, match=r"body_pose has shape \(20, 3\)"):
        Pose(np.zeros(3), np.zeros((20, 3)))
    with pytest.raises(PoseError, match="global_orient contains NaN"):
        Pose([0.0, np.nan, 0.0], np.zeros((21, 3)))
    with pytest.raises(PoseError, match="has no 'body_pose'"):
        Pose.from_json({"global_orient": [0, 0, 0]})
    pose = Pose(np.arange(3) * 0.1, np.arange(63).reshape(21, 3) * 0.01)
    again = Pose.from_json(pose.to_json())
    assert again.allclose(pose, atol=0.0)
    assert not pose.body_pose.flags.writeable  # poses are shared between requests


def test_rest_mesh_is_grounded_labelled_and_sized(body: MannequinBody) -> None:
    mesh = body.rest()
    assert mesh.vertices.shape == (24256, 3) and mesh.vertices.dtype == np.float32
    assert mesh.faces.shape == (48396, 3) and mesh.faces.dtype == np.int32
    assert mesh.joints.shape == (22, 3) and mesh.joint_names == JOINT_NAMES
    assert mesh.vertices[:, 1].min() == pytest.approx(0.0, abs=1e-6)
    assert mesh.joints[0, [0, 2]] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert mesh.vertices[:, 1].max() == pytest.approx(1.721, abs=0.01)  # SMPL-X neutral height
    counts = np.bincount(mesh.part_labels, minlength=len(PART_NAMES))
    assert np.all(counts > 300), dict(zip(PART_NAMES, counts))
    # The body's left is +x: every left-hand vertex lies at x > 0.5 m in the T-pose.
    left_hand = mesh.vertices[mesh.part_labels == PART_NAMES.index("left_hand")]
    right_hand = mesh.vertices[mesh.part_labels == PART_NAMES.index("right_hand")]
    assert left_hand[:, 0].min() > 0.5 and right_hand[:, 0].max() < -0.5


def test_rest_and_posed_share_vertex_order(body: MannequinBody) -> None:
    rest = body.rest()
    posed = body.posed(set_joint(Pose.zero(), "left_elbow", (0, -90, 0)))
    moved = np.linalg.norm(posed.vertices - rest.vertices, axis=1) > 1e-4
    # Only the left forearm and hand move (plus skin blended across the elbow).
    parts = set(np.unique(rest.part_labels[moved]))
    allowed = {PART_NAMES.index(p) for p in ("left_forearm", "left_hand", "left_upper_arm")}
    assert parts <= allowed and PART_NAMES.index("left_hand") in parts
    assert np.array_equal(body.posed(Pose.zero()).vertices, rest.vertices)


def test_smplx_sign_conventions(body: MannequinBody) -> None:
    rest = body.rest()
    wrist = JOINT_NAMES.index("left_wrist")
    lowered = body.posed(set_joint(Pose.zero(), "left_shoulder", (0, 0, -80)))
    assert lowered.joints[wrist, 1] < rest.joints[wrist, 1] - 0.4  # shoulder z < 0 lowers the left arm
    ankle = JOINT_NAMES.index("right_ankle")
    kicked = body.posed(set_joint(Pose.zero(), "right_hip", (-60, 0, 0)))
    assert kicked.joints[ankle, 2] > 0.3  # hip flexion (x < 0) swings the leg forward (+z)


def test_forward_kinematics_matches_the_mannequin(body: MannequinBody) -> None:
    rng = np.random.default_rng(7)
    pose = Pose(rng.normal(0, 0.3, 3), rng.normal(0, 0.4, (21, 3)))
    mesh = body.posed(pose)
    joints = forward_kinematics(
        torch.tensor(body.rest_joints()), torch.tensor(pose.global_orient), torch.tensor(pose.body_pose)
    ).numpy()
    np.testing.assert_allclose(joints, mesh.joints - mesh.joints[0], atol=1e-5)


def test_shape_changes_height(body: MannequinBody) -> None:
    tall = np.zeros(10)
    tall[0] = 2.0
    height = body.rest(tall).vertices[:, 1].max()
    assert height == pytest.approx(1.92, abs=0.03)
    assert body.rest().vertices[:, 1].max() == pytest.approx(1.721, abs=0.01)  # shape is restored
    with pytest.raises(PoseError, match="shape has shape"):
        body.rest(np.zeros(5))


def test_smplx_backend_explains_missing_files(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OMFA_SMPLX_DIR", raising=False)
    with pytest.raises(BodyModelError, match="smpl-x.is.tue.mpg.de"):
        SMPLXBody()
    with pytest.raises(BodyModelError, match=r"no SMPLX_NEUTRAL.npz in .*SMPLX_NEUTRAL.npz"):
        load_body("smplx", tmp_path)
    monkeypatch.setenv("OMFA_SMPLX_DIR", str(tmp_path))
    with pytest.raises(BodyModelError, match=str(tmp_path)):
        load_body("smplx")
    with pytest.raises(BodyModelError, match="use 'mannequin' or 'smplx'"):
        load_body("robot")
