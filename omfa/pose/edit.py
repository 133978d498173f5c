"""Pose editing for the UI: joint sliders, turning the body, dragging a hand or foot.

Every function is pure: it takes a `Pose` and returns a new one.

- `set_joint` writes one joint's rotation; slider values are the joint's
  axis-angle components in degrees (the numbers a preset file stores, in
  degrees), so reading a pose back into sliders is exact (`joint_degrees`).
- `turn` rotates the whole body about the vertical axis.
- `drag_limb` moves a hand (wrist) or foot (ankle) to a pixel of the pose map
  by inverse kinematics over that limb's two joints: a ball joint
  (shoulder / hip, 3 degrees of freedom) and a hinge (elbow / knee, one bend
  angle), within anatomical limits, staying close to the starting pose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from omfa.pose.body import BODY_POSE_JOINTS, JOINT_NAMES, Body, Pose, forward_kinematics, load_body


class EditError(ValueError):
    """An unknown joint or effector, or an out-of-range edit."""


@dataclass(frozen=True)
class JointRange:
    """Slider ranges (degrees) for the three axis-angle components of one joint."""

    row: int  # body_pose row
    x: tuple[float, float]
    y: tuple[float, float]
    z: tuple[float, float]

    def bounds(self) -> np.ndarray:
        """(3, 2) [low, high] in degrees."""
        return np.array([self.x, self.y, self.z], dtype=np.float64)


def _joint(name: str, x: tuple[float, float], y: tuple[float, float], z: tuple[float, float]) -> JointRange:
    return JointRange(BODY_POSE_JOINTS.index(name), x, y, z)


# Axes in the SMPL-X rest frame: x to the body's left, y up, z forward. Left
# and right ranges mirror each other (y and z components change sign).
MAIN_JOINTS: dict[str, JointRange] = {
    "spine": _joint("spine1", (-30, 60), (-40, 40), (-30, 30)),
    "chest": _joint("spine3", (-30, 40), (-40, 40), (-30, 30)),
    "neck": _joint("neck", (-40, 50), (-60, 60), (-40, 40)),
    "head": _joint("head", (-40, 50), (-60, 60), (-40, 40)),
    "left_shoulder": _joint("left_shoulder", (-90, 90), (-120, 60), (-100, 90)),
    "right_shoulder": _joint("right_shoulder", (-90, 90), (-60, 120), (-90, 100)),
    "left_elbow": _joint("left_elbow", (-30, 30), (-150, 0), (-30, 30)),
    "right_elbow": _joint("right_elbow", (-30, 30), (0, 150), (-30, 30)),
    "left_wrist": _joint("left_wrist", (-60, 60), (-30, 30), (-70, 70)),
    "right_wrist": _joint("right_wrist", (-60, 60), (-30, 30), (-70, 70)),
    "left_hip": _joint("left_hip", (-120, 40), (-45, 45), (-30, 60)),
    "right_hip": _joint("right_hip", (-120, 40), (-45, 45), (-60, 30)),
    "left_knee": _joint("left_knee", (0, 150), (-10, 10), (-10, 10)),
    "right_knee": _joint("right_knee", (0, 150), (-10, 10), (-10, 10)),
    "left_ankle": _joint("left_ankle", (-40, 50), (-30, 30), (-25, 25)),
    "right_ankle": _joint("right_ankle", (-40, 50), (-30, 30), (-25, 25)),
}


@dataclass(frozen=True)
class Limb:
    """A two-joint chain: ball joint, hinge (bend about one rest-frame axis), end joint."""

    ball: str
    hinge: str
    end: str
    hinge_axis: tuple[float, float, float]  # positive bend = anatomical flexion
    max_bend_deg: float


LIMBS: dict[str, Limb] = {
    "left_hand": Limb("left_shoulder", "left_elbow", "left_wrist", (0.0, -1.0, 0.0), 150.0),
    "right_hand": Limb("right_shoulder", "right_elbow", "right_wrist", (0.0, 1.0, 0.0), 150.0),
    "left_foot": Limb("left_hip", "left_knee", "left_ankle", (1.0, 0.0, 0.0), 150.0),
    "right_foot": Limb("right_hip", "right_knee", "right_ankle", (1.0, 0.0, 0.0), 150.0),
}


def _main_joint(joint: str) -> JointRange:
    if joint not in MAIN_JOINTS:
        raise EditError(f"unknown joint {joint!r}; sliders exist for {', '.join(MAIN_JOINTS)}")
    return MAIN_JOINTS[joint]


def joint_degrees(pose: Pose, joint: str) -> tuple[float, float, float]:
    """A main joint's axis-angle components in degrees (the slider values)."""
    row = _main_joint(joint).row
    x, y, z = np.degrees(pose.body_pose[row])
    return float(x), float(y), float(z)


def set_joint(pose: Pose, joint: str, xyz_deg: Sequence[float]) -> Pose:
    """A copy of `pose` with one main joint's rotation set (axis-angle components, degrees).

    Values are clamped to the joint's slider range.
    """
    spec = _main_joint(joint)
    values = np.asarray(xyz_deg, dtype=np.float64)
    if values.shape != (3,) or not np.all(np.isfinite(values)):
        raise EditError(f"{joint} rotation {list(np.ravel(values))} must be 3 finite angles in degrees")
    bounds = spec.bounds()
    body_pose = pose.body_pose.copy()
    body_pose[spec.row] = np.radians(np.clip(values, bounds[:, 0], bounds[:, 1]))
    return Pose(pose.global_orient, body_pose)


def matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (3,) axis-angle with angle in [0, pi]."""
    cos = np.clip((np.trace(matrix) - 1) / 2, -1.0, 1.0)
    angle = math.acos(cos)
    if angle < 1e-8:
        return np.zeros(3)
    if angle > math.pi - 1e-6:
        # Near 180 degrees the antisymmetric part vanishes: read the axis off R + I.
        column = np.argmax(np.diag(matrix))
        axis = (matrix[:, column] + np.eye(3)[column]) / math.sqrt(2 * (1 + matrix[column, column]))
        return axis * angle
    axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    return axis / (2 * math.sin(angle)) * angle


def axis_angle_matrix(rotvec: np.ndarray) -> np.ndarray:
    """(3,) axis-angle -> (3, 3) rotation (Rodrigues)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = rotvec / angle
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def turn(pose: Pose, yaw_deg: float) -> Pose:
    """Turn the whole body about the vertical axis; positive turns it to its own left.

    Seen from a camera at yaw 0, `turn(pose, d)` looks like `pose` seen from yaw -d.
    """
    yaw = math.radians(float(yaw_deg))
    rotation = axis_angle_matrix(np.array([0.0, yaw, 0.0])) @ axis_angle_matrix(pose.global_orient)
    return Pose(matrix_to_axis_angle(rotation), pose.body_pose)


def _limb(effector: str) -> Limb:
    if effector not in LIMBS:
        raise EditError(f"unknown effector {effector!r}; drag one of {', '.join(LIMBS)}")
    return LIMBS[effector]


def solve_limb(
    pose: Pose,
    effector: str,
    target: Sequence[float],
    rest_joints: np.ndarray,
    *,
    steps: int = 150,
) -> Pose:
    """Inverse kinematics: move `effector` to `target` (3,), pelvis-relative metres.

    Optimises the limb's ball joint (3 axis-angle components, within MAIN_JOINTS
    ranges) and hinge bend (0 to max_bend_deg) with Adam on
    |end - target|^2 + a small pull towards the starting pose, which picks the
    solution nearest to it when the target can be reached in several ways.
    `rest_joints` (22, 3) comes from `Body.rest_joints`.
    """
    import torch

    limb = _limb(effector)
    ball_row, hinge_row = BODY_POSE_JOINTS.index(limb.ball), BODY_POSE_JOINTS.index(limb.hinge)
    end = JOINT_NAMES.index(limb.end)
    axis = torch.tensor(limb.hinge_axis, dtype=torch.float64)
    bounds = torch.tensor(np.radians(MAIN_JOINTS[limb.ball].bounds()))
    body_pose = torch.tensor(pose.body_pose)
    orient = torch.tensor(pose.global_orient)
    rest = torch.tensor(np.asarray(rest_joints, dtype=np.float64))
    goal = torch.tensor(np.asarray(target, dtype=np.float64))

    ball0 = body_pose[ball_row].clone()
    bend0 = float(torch.clamp(body_pose[hinge_row] @ axis, 0.0, math.radians(limb.max_bend_deg)))
    ball = ball0.clone().requires_grad_(True)
    bend = torch.tensor(bend0, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([ball, bend], lr=0.05)

    def solve_pose() -> torch.Tensor:
        rows = body_pose.clone()
        rows[ball_row] = ball
        rows[hinge_row] = bend * axis
        return rows

    for _ in range(steps):
        optimiser.zero_grad()
        joints = forward_kinematics(rest, orient, solve_pose())
        loss = ((joints[end] - goal) ** 2).sum() + 1e-3 * ((ball - ball0) ** 2).sum()
        loss.backward()
        optimiser.step()
        with torch.no_grad():  # projected gradient: stay inside the joint limits
            ball.copy_(torch.minimum(torch.maximum(ball, bounds[:, 0]), bounds[:, 1]))
            bend.clamp_(0.0, math.radians(limb.max_bend_deg))
    return Pose(pose.global_orient, solve_pose().detach().numpy())


def drag_limb(
    pose: Pose,
    effector: str,
    target_xy: Sequence[float],
    size_hw: Sequence[int],
    yaw_deg: float = 0.0,
    *,
    body: Body | None = None,
    shape: np.ndarray | None = None,
) -> Pose:
    """Move a hand or foot so it appears at pixel `target_xy` (x right, y down).

    The pixel belongs to an image of `size_hw` rendered by omfa.pose.render at
    `yaw_deg`. The 3-D target is where the pixel's viewing ray meets the plane
    facing the camera through the effector's current position, so the limb
    moves across the picture and keeps its depth.
    """
    from omfa.pose.render import camera_pose, project, unproject_ray

    limb = _limb(effector)
    if len(target_xy) != 2 or not all(math.isfinite(float(v)) for v in target_xy):
        raise EditError(f"target_xy {list(target_xy)} must be two finite pixel coordinates (x, y)")
    height, width = int(size_hw[0]), int(size_hw[1])
    x, y = float(target_xy[0]), float(target_xy[1])
    if not (0 <= x <= width and 0 <= y <= height):
        raise EditError(f"target ({x:.1f}, {y:.1f}) lies outside the {height}x{width} image; drag inside it")
    body = body if body is not None else load_body()
    mesh = body.posed(pose, shape)
    current = mesh.joints[JOINT_NAMES.index(limb.end)].astype(np.float64)
    depth = project(current[None], yaw_deg, size_hw)[0, 2]  # metres along the view axis
    origin, direction = unproject_ray((x, y), yaw_deg, size_hw)
    view_axis = -camera_pose(yaw_deg)[:3, 2]  # the camera looks along its -z
    goal = origin + direction * depth / float(direction @ view_axis)
    pelvis = mesh.joints[0].astype(np.float64)
    return solve_limb(pose, effector, goal - pelvis, body.rest_joints(shape))
