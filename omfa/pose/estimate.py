"""A body pose from a photograph: MediaPipe landmarks -> SMPL-X rotations.

MediaPipe's BlazePose gives 33 landmarks per person, in the image and lifted
to 3-D. The image positions are the accurate part, so the 3-D points used
here take x and y from the image and only the depth from MediaPipe
(`lift_landmarks`). Bodies differ in proportions, so the fit matches bone
*directions*, not positions: a short torch optimisation over joint rotations
makes each bone of the body's skeleton (`omfa.pose.body.forward_kinematics`)
point where the photo's bone points, weighted by landmark visibility. Elbows
and knees are hinges (one bend angle), which also pins the twist of the upper
arm and thigh; ball joints stay within the slider ranges of
`omfa.pose.edit.MAIN_JOINTS`. The whole-body rotation starts from the frame
spanned by the hips and the spine, so a person seen from the back or the side
starts close to the answer.

The result is in camera terms: a person facing the camera gets a body facing
+z (yaw 0); a person turned away gets the matching `global_orient`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from omfa.pose.body import BODY_POSE_JOINTS, JOINT_NAMES, Body, Pose, forward_kinematics, load_body
from omfa.pose.edit import LIMBS, MAIN_JOINTS, matrix_to_axis_angle


class PersonCountError(ValueError):
    """The photo shows no person, or more than one."""


class NoPersonError(PersonCountError):
    """No person was found in the photo."""


class SeveralPeopleError(PersonCountError):
    """More than one person was found in the photo."""


@dataclass(frozen=True, eq=False)
class EstimatedPose:
    """A pose fitted to a photo.

    keypoints_xy: (33, 2) BlazePose landmarks in pixels (x right, y down) of the input image;
    visibility: (33,) in [0, 1]; confidence: mean visibility of the limb landmarks the
    fit used; fit_error_deg: mean angle between fitted and observed bones.
    """

    pose: Pose
    keypoints_xy: np.ndarray
    visibility: np.ndarray
    confidence: float
    fit_error_deg: float


# Keypoints seen by both skeletons: (name, body joints averaged, BlazePose landmarks averaged).
KEYPOINTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("hips", ("left_hip", "right_hip"), ("left_hip", "right_hip")),
    ("left_hip", ("left_hip",), ("left_hip",)),
    ("right_hip", ("right_hip",), ("right_hip",)),
    ("left_knee", ("left_knee",), ("left_knee",)),
    ("right_knee", ("right_knee",), ("right_knee",)),
    ("left_ankle", ("left_ankle",), ("left_ankle",)),
    ("right_ankle", ("right_ankle",), ("right_ankle",)),
    ("left_toe", ("left_foot",), ("left_foot_index",)),
    ("right_toe", ("right_foot",), ("right_foot_index",)),
    ("shoulders", ("left_shoulder", "right_shoulder"), ("left_shoulder", "right_shoulder")),
    ("left_shoulder", ("left_shoulder",), ("left_shoulder",)),
    ("right_shoulder", ("right_shoulder",), ("right_shoulder",)),
    ("left_elbow", ("left_elbow",), ("left_elbow",)),
    ("right_elbow", ("right_elbow",), ("right_elbow",)),
    ("left_wrist", ("left_wrist",), ("left_wrist",)),
    ("right_wrist", ("right_wrist",), ("right_wrist",)),
    ("head", ("head",), ("left_ear", "right_ear")),
)
KEYPOINT_NAMES = tuple(name for name, _, _ in KEYPOINTS)
# Bones as (from, to) keypoints, with a weight: the two lines across the body
# fix its orientation, the spine and neck its bend, the limbs everything else.
BONES: tuple[tuple[str, str, float], ...] = (
    ("right_hip", "left_hip", 2.0),
    ("right_shoulder", "left_shoulder", 2.0),
    ("hips", "shoulders", 2.0),
    ("shoulders", "head", 1.0),
    ("left_hip", "left_knee", 1.0),
    ("left_knee", "left_ankle", 1.0),
    ("left_ankle", "left_toe", 0.5),
    ("right_hip", "right_knee", 1.0),
    ("right_knee", "right_ankle", 1.0),
    ("right_ankle", "right_toe", 0.5),
    ("left_shoulder", "left_elbow", 1.0),
    ("left_elbow", "left_wrist", 1.0),
    ("right_shoulder", "right_elbow", 1.0),
    ("right_elbow", "right_wrist", 1.0),
)
# BlazePose puts its hip landmarks on the outside of the hips, SMPL-X its hip
# joints in the hip sockets: on the mannequin the landmark hip line is 1.83
# times the joint hip line (0.223 m vs 0.122 m, the same in every preset), so
# the fit shrinks the photo's hip line about its midpoint by this ratio.
HIP_WIDTH_RATIO = 0.55
# Rows of body_pose the fit moves freely (3 components, within MAIN_JOINTS ranges).
BALL_JOINTS = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_ankle", "right_ankle")


def _weight_matrices(landmark_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(K, 22) and (K, 33) averaging matrices from KEYPOINTS."""
    body = np.zeros((len(KEYPOINTS), len(JOINT_NAMES)))
    photo = np.zeros((len(KEYPOINTS), len(landmark_names)))
    for k, (_, joints, landmarks) in enumerate(KEYPOINTS):
        body[k, [JOINT_NAMES.index(j) for j in joints]] = 1.0 / len(joints)
        photo[k, [landmark_names.index(m) for m in landmarks]] = 1.0 / len(landmarks)
    return body, photo


def _initial_orient(points: np.ndarray) -> np.ndarray:
    """Axis-angle of the body frame spanned by the hip line (x) and the spine (y)."""
    index = {name: k for k, name in enumerate(KEYPOINT_NAMES)}
    x = points[index["left_hip"]] - points[index["right_hip"]]
    up = points[index["shoulders"]] - points[index["hips"]]
    x = x / max(np.linalg.norm(x), 1e-9)
    y = up - (up @ x) * x
    y = y / max(np.linalg.norm(y), 1e-9)
    frame = np.stack([x, y, np.cross(x, y)], axis=1)  # columns: body x, y, z in the world
    return matrix_to_axis_angle(frame)


def fit_landmarks(
    points_xyz: np.ndarray,
    visibility: np.ndarray,
    landmark_names: tuple[str, ...],
    rest_joints: np.ndarray,
    *,
    steps: int = 250,
) -> tuple[Pose, float]:
    """Fit a Pose to 3-D BlazePose landmarks. Returns (pose, mean bone error in degrees).

    points_xyz: (33, 3) landmarks in the body frame (x = the left of a person
    facing the camera, y up, z towards the camera; any scale). The loss is
    sum_bones w * (1 - cos(fitted bone, landmark bone)), w = bone weight times
    the smaller visibility of its two ends, plus a small pull to the rest pose.
    """
    import torch

    body_w, photo_w = _weight_matrices(landmark_names)
    points = _narrow_hips(photo_w @ np.asarray(points_xyz, dtype=np.float64))  # (K, 3)
    seen = photo_w @ np.asarray(visibility, dtype=np.float64)  # (K,)
    index = {name: k for k, name in enumerate(KEYPOINT_NAMES)}
    a = [index[s] for s, _, _ in BONES]
    b = [index[e] for _, e, _ in BONES]
    target = points[b] - points[a]
    target = torch.tensor(target / np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-9))
    weight = torch.tensor([w for _, _, w in BONES]) * torch.tensor(np.minimum(seen[a], seen[b]))
    body_w = torch.tensor(body_w)
    rest = torch.tensor(np.asarray(rest_joints, dtype=np.float64))

    ball_rows = [BODY_POSE_JOINTS.index(j) for j in BALL_JOINTS]
    bounds = torch.tensor(np.stack([np.radians(MAIN_JOINTS[j].bounds()) for j in BALL_JOINTS]))  # (6, 3, 2)
    hinges = [LIMBS[effector] for effector in ("left_hand", "right_hand", "left_foot", "right_foot")]
    hinge_rows = [BODY_POSE_JOINTS.index(limb.hinge) for limb in hinges]
    hinge_axes = torch.tensor([limb.hinge_axis for limb in hinges])
    hinge_max = torch.tensor([np.radians(limb.max_bend_deg) for limb in hinges])
    spine_rows = [BODY_POSE_JOINTS.index(j) for j in ("spine1", "spine2", "spine3")]
    neck_rows = [BODY_POSE_JOINTS.index(j) for j in ("neck", "head")]

    orient = torch.tensor(_initial_orient(points), requires_grad=True)
    balls = torch.zeros(len(ball_rows), 3, dtype=torch.float64, requires_grad=True)
    bends = torch.full((len(hinges),), 0.1, dtype=torch.float64, requires_grad=True)
    spine = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # shared by the three spine joints
    neck = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # shared by neck and head
    optimiser = torch.optim.Adam([orient, balls, bends, spine, neck], lr=0.04)

    def assemble() -> torch.Tensor:
        rows = [torch.zeros(3, dtype=torch.float64)] * len(BODY_POSE_JOINTS)
        for k, row in enumerate(ball_rows):
            rows[row] = balls[k]
        for k, row in enumerate(hinge_rows):
            rows[row] = bends[k] * hinge_axes[k]
        for row in spine_rows:
            rows[row] = spine / 3
        for row in neck_rows:
            rows[row] = neck / 2
        return torch.stack(rows, 0)

    def losses() -> tuple[torch.Tensor, torch.Tensor]:
        joints = forward_kinematics(rest, orient, assemble())  # (22, 3)
        # body_w @ joints as a broadcast sum: a BLAS call this small costs milliseconds in threading overhead.
        keypoints = (body_w[:, :, None] * joints[None, :, :]).sum(1)  # (K, 3)
        bones = keypoints[b] - keypoints[a]
        cosines = (bones / bones.norm(dim=1, keepdim=True).clamp_min(1e-9) * target).sum(1)
        return cosines, (weight * (1 - cosines)).sum()

    for _ in range(steps):
        optimiser.zero_grad()
        prior = (balls**2).sum() + (spine**2).sum() + (neck**2).sum()
        (losses()[1] + 1e-3 * prior).backward()
        optimiser.step()
        with torch.no_grad():  # projected gradient: keep joints in their ranges
            balls.copy_(torch.minimum(torch.maximum(balls, bounds[..., 0]), bounds[..., 1]))
            bends.copy_(torch.minimum(bends.clamp_min(0.0), hinge_max))
    with torch.no_grad():
        angles = torch.rad2deg(torch.arccos(losses()[0].clamp(-1, 1)))
        error = float((angles * weight).sum() / weight.sum().clamp_min(1e-9))
        pose = Pose(orient.numpy(), assemble().numpy())
    return pose, error


def _narrow_hips(points: np.ndarray) -> np.ndarray:
    """Move the two hip keypoints in towards their midpoint by HIP_WIDTH_RATIO."""
    points = points.copy()
    left, right = KEYPOINT_NAMES.index("left_hip"), KEYPOINT_NAMES.index("right_hip")
    middle = (points[left] + points[right]) / 2
    points[[left, right]] = middle + HIP_WIDTH_RATIO * (points[[left, right]] - middle)
    return points


def lift_landmarks(pixel_xy: np.ndarray, world_xyz: np.ndarray, landmark_names: tuple[str, ...]) -> np.ndarray:
    """3-D landmarks (33, 3) in the body frame: x, y from the image, depth from MediaPipe's world.

    Image positions are more accurate than MediaPipe's lifted 3-D ones, so
    only the depth comes from `world_xyz` (metres: x image right, y down, z
    away from the camera). Pixels become metres with the scale that matches
    the two in-image bone lengths. The frame is then flipped to the body's: a
    person facing the camera has their left on the image right, so x stays,
    y turns up and z turns towards the camera.
    """
    pixel_xy = np.asarray(pixel_xy, dtype=np.float64)
    world = np.asarray(world_xyz, dtype=np.float64)
    index = landmark_names.index
    pairs = [
        (index(f"{side}_{a}"), index(f"{side}_{b}"))
        for side in ("left", "right")
        for a, b in (("shoulder", "hip"), ("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"))
    ]
    in_image = sum(np.linalg.norm(pixel_xy[a] - pixel_xy[b]) for a, b in pairs)
    in_world = sum(np.linalg.norm(world[a, :2] - world[b, :2]) for a, b in pairs)
    scale = in_world / max(in_image, 1e-9)  # metres per pixel
    return np.concatenate([pixel_xy * scale, world[:, 2:]], axis=1) * np.array([1.0, -1.0, -1.0])


def _as_rgb(image: Any) -> np.ndarray:
    if hasattr(image, "convert"):  # a PIL image
        return np.asarray(image.convert("RGB"))
    return np.asarray(image)


def estimate_pose(image: Any, *, body: Body | None = None, models: Any = None) -> EstimatedPose:
    """The SMPL-X pose of the one person in `image` (uint8 RGB (H, W, 3) array or PIL image).

    Raises NoPersonError / SeveralPeopleError (ValueError subclasses) when the
    photo does not show exactly one person.
    """
    from omfa.mediapipe_models import POSE_LANDMARK_NAMES, default_models

    rgb = _as_rgb(image)
    models = models if models is not None else default_models()
    people = models.people(rgb)
    if people.pose is None:
        raise NoPersonError("no person found in the photo; upload a photo showing one whole person")
    if people.count > 1:
        raise SeveralPeopleError(f"{people.count} people found in the photo; crop it to show only one person")
    landmarks = people.pose
    height, width = rgb.shape[:2]
    pixels = landmarks.pixel_xy(height, width)
    points = lift_landmarks(pixels, landmarks.world_xyz, POSE_LANDMARK_NAMES)
    body = body if body is not None else load_body()
    pose, error = fit_landmarks(points, landmarks.visibility, POSE_LANDMARK_NAMES, body.rest_joints())
    limb_landmarks = [POSE_LANDMARK_NAMES.index(name) for name in POSE_LANDMARK_NAMES[11:29]]
    return EstimatedPose(
        pose=pose,
        keypoints_xy=pixels,
        visibility=landmarks.visibility.copy(),
        confidence=float(np.mean(landmarks.visibility[limb_landmarks])),
        fit_error_deg=error,
    )
