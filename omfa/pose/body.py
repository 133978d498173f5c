"""Posed bodies: SMPL-X pose parameters in, a labelled triangle mesh out.

Two backends share one interface (`Body`):

- `MannequinBody` (default) drives the mannequin-x wooden mannequin, which
  needs no licensed files;
- `SMPLXBody` drives the real SMPL-X model when the user has its files
  (`OMFA_SMPLX_DIR` or an explicit folder).

Both take the same `Pose` (SMPL-X `global_orient` and 21 `body_pose` rows,
axis-angle, radians) and return a `PosedMesh` in one world frame: metres, Y up,
the body facing +z with its left side towards +x, the lowest vertex on the
floor (y = 0) and the pelvis on the vertical axis (x = z = 0). Grounding every
pose the same way lets the renderer use one fixed camera for all of them, and a
sitting pose rests its feet on the floor as on a chair.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

NUM_BODY_JOINTS = 21  # body_pose rows: the SMPL-X joints 1..21
NUM_SHAPE = 10  # shape (beta) coefficients accepted by both backends

# The 22 SMPL-X body joints in SMPL-X order; body_pose row i rotates joint i + 1.
JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
)
BODY_POSE_JOINTS: tuple[str, ...] = JOINT_NAMES[1:]
# Parent of each joint in JOINT_NAMES (-1 for the root), as in SMPL-X.
JOINT_PARENTS: tuple[int, ...] = (
    -1,
    0,
    0,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    9,
    9,
    12,
    13,
    14,
    16,
    17,
    18,
    19,
)

# Body regions of the pose map. A vertex belongs to the region of the joint
# that moves it most: the shoulder joint moves the upper arm, the elbow the
# forearm, the hip the thigh, the knee the shin, the ankle the foot.
PART_NAMES: tuple[str, ...] = (
    "head",
    "neck",
    "torso",
    "left_upper_arm",
    "left_forearm",
    "left_hand",
    "right_upper_arm",
    "right_forearm",
    "right_hand",
    "left_thigh",
    "left_shin",
    "left_foot",
    "right_thigh",
    "right_shin",
    "right_foot",
)
JOINT_PART: dict[str, str] = {
    "pelvis": "torso",
    "spine1": "torso",
    "spine2": "torso",
    "spine3": "torso",
    "left_collar": "torso",
    "right_collar": "torso",
    "neck": "neck",
    "head": "head",
    "left_shoulder": "left_upper_arm",
    "left_elbow": "left_forearm",
    "left_wrist": "left_hand",
    "right_shoulder": "right_upper_arm",
    "right_elbow": "right_forearm",
    "right_wrist": "right_hand",
    "left_hip": "left_thigh",
    "left_knee": "left_shin",
    "left_ankle": "left_foot",
    "left_foot": "left_foot",
    "right_hip": "right_thigh",
    "right_knee": "right_shin",
    "right_ankle": "right_foot",
    "right_foot": "right_foot",
}


class PoseError(ValueError):
    """A pose or shape array with the wrong size or non-finite values."""


class BodyModelError(ValueError):
    """A body backend that cannot be built (unknown kind, missing model files)."""


def _as_array(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PoseError(f"{name} is not numeric ({error}); pass {shape} numbers") from None
    if array.size == int(np.prod(shape)):
        array = array.reshape(shape)
    if array.shape != shape:
        raise PoseError(f"{name} has shape {array.shape}; need {shape} axis-angle values")
    if not np.all(np.isfinite(array)):
        raise PoseError(f"{name} contains NaN or infinity; pass finite angles in radians")
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Pose:
    """An SMPL-X body pose: axis-angle rotations in radians.

    global_orient: (3,) rotation of the whole body about the pelvis.
    body_pose: (21, 3) rotation of each joint in `BODY_POSE_JOINTS` relative to
    its parent, in the parent's frame (SMPL-X convention: all rest frames are
    aligned with the world, so at rest x points to the body's left, y up, z forward).
    """

    global_orient: np.ndarray
    body_pose: np.ndarray

    def __post_init__(self) -> None:
        # Stored as read-only float64 copies so a Pose can be shared safely.
        object.__setattr__(self, "global_orient", _as_array(self.global_orient, (3,), "global_orient"))
        object.__setattr__(self, "body_pose", _as_array(self.body_pose, (NUM_BODY_JOINTS, 3), "body_pose"))

    @classmethod
    def zero(cls) -> Pose:
        """The rest pose (a T-pose facing the camera)."""
        return cls(np.zeros(3), np.zeros((NUM_BODY_JOINTS, 3)))

    def to_json(self) -> dict[str, list]:
        """Plain lists: {"global_orient": [3], "body_pose": [[3] x 21]}."""
        return {"global_orient": self.global_orient.tolist(), "body_pose": self.body_pose.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pose:
        """Inverse of `to_json`; raises PoseError naming a missing or bad field."""
        if not isinstance(data, dict):
            raise PoseError(f"pose must be an object with global_orient and body_pose, got {type(data).__name__}")
        for key in ("global_orient", "body_pose"):
            if key not in data:
                raise PoseError(f"pose has no {key!r}; need global_orient (3) and body_pose (21 x 3)")
        return cls(data["global_orient"], data["body_pose"])

    def allclose(self, other: Pose, atol: float = 1e-6) -> bool:
        """True when both rotations agree to `atol` radians per component."""
        return bool(
            np.allclose(self.global_orient, other.global_orient, atol=atol)
            and np.allclose(self.body_pose, other.body_pose, atol=atol)
        )


@dataclass(frozen=True, eq=False)
class PosedMesh:
    """A posed body in the world frame described in the module docstring.

    vertices: (V, 3) float32 metres; faces: (F, 3) int32; part_labels: (V,)
    int64 index into PART_NAMES; joints: (22, 3) float32 positions of JOINT_NAMES.
    """

    vertices: np.ndarray
    faces: np.ndarray
    part_labels: np.ndarray
    joints: np.ndarray
    joint_names: tuple[str, ...] = field(default=JOINT_NAMES)
    face_uv: np.ndarray | None = None  # (V, 2) texture coordinates of the face, see face_texcoords
    surface: np.ndarray | None = None  # (V, 3) float32 in [0, 1]: each vertex's place on the rest body


def part_labels_from_joints(strongest_joint: np.ndarray) -> np.ndarray:
    """(V,) index into JOINT_NAMES -> (V,) index into PART_NAMES."""
    lookup = np.array([PART_NAMES.index(JOINT_PART[name]) for name in JOINT_NAMES])
    return lookup[strongest_joint]


# The face is drawn on the front of the head through a planar projection of the
# rest head: this box (metres, relative to the head joint, x = the body's left,
# y up) maps to u in [0, 0.5] and v in [0, 1] of the face texture
# (omfa.pose.render.face_texture), the left half of which shows the face as
# seen from the front. Every other vertex maps to the blank right half, at the
# same projected place, so triangles across the border sample blank texels.
FACE_BOX_M = (-0.09, 0.09, -0.09, 0.15)


def face_texcoords(rest_vertices: np.ndarray, part_labels: np.ndarray, head: np.ndarray) -> np.ndarray:
    """(V, 2) float32 texture coordinates of a face on the front of the rest head."""
    x0, x1, y0, y1 = FACE_BOX_M
    is_head = part_labels == PART_NAMES.index("head")
    centre_x = rest_vertices[is_head, 0].mean()  # the head mesh need not be centred on its joint
    u = np.clip((rest_vertices[:, 0] - centre_x - x0) / (x1 - x0), 0.0, 1.0) * 0.5
    v = np.clip((rest_vertices[:, 1] - head[1] - y0) / (y1 - y0), 0.0, 1.0)
    front = is_head & (rest_vertices[:, 2] > head[2] + 0.02)
    return np.stack([np.where(front, u, u + 0.5), v], axis=1).astype(np.float32)


def ground(vertices: np.ndarray, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Translate so the lowest vertex has y = 0 and the pelvis has x = z = 0."""
    offset = np.array([-joints[0, 0], -vertices[:, 1].min(), -joints[0, 2]])
    return (vertices + offset).astype(np.float32), (joints + offset).astype(np.float32)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, differentiable everywhere (also at zero): (..., 3) -> (..., 3, 3)."""
    import torch

    # The epsilon keeps the gradient of the norm finite at the zero rotation.
    angle = torch.sqrt((axis_angle**2).sum(-1, keepdim=True) + 1e-12)[..., None]  # (..., 1, 1)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*x.shape, 3, 3)  # [a]_x
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(cross)
    cross_sq = (cross[..., :, :, None] * cross[..., None, :, :]).sum(-2)  # [a]_x @ [a]_x without BLAS
    return eye + torch.sin(angle) / angle * cross + (1 - torch.cos(angle)) / angle**2 * cross_sq


def forward_kinematics(rest_joints: torch.Tensor, global_orient: torch.Tensor, body_pose: torch.Tensor) -> torch.Tensor:
    """Posed joint positions (22, 3), pelvis at the origin, from rest joints (22, 3).

    SMPL-X kinematics: every rest frame is aligned with the world, so joint j
    sits at parent + R_parent_world @ (rest_j - rest_parent). Differentiable in
    both rotations (torch tensors: (3,) and (21, 3)).
    """
    import torch

    rotations = torch.cat([global_orient.reshape(1, 3), body_pose.reshape(NUM_BODY_JOINTS, 3)], 0)
    local = axis_angle_to_matrix(rotations)  # (22, 3, 3)
    world_rot = [local[0]]
    positions = [torch.zeros_like(rest_joints[0])]
    # Products of 3x3 matrices are written as broadcast sums: BLAS calls on
    # such tiny operands cost far more in threading overhead than they compute.
    for j in range(1, len(JOINT_PARENTS)):
        parent = JOINT_PARENTS[j]
        offset = rest_joints[j] - rest_joints[parent]
        positions.append(positions[parent] + (world_rot[parent] * offset).sum(-1))
        world_rot.append((world_rot[parent][:, :, None] * local[j][None, :, :]).sum(1))
    return torch.stack(positions, 0)


class Body(ABC):
    """A body model: `posed(pose, shape)` and `rest(shape)` share one vertex order.

    `faces`, `part_labels` and `strongest_joint` are constant per backend, so a
    garment defined on `rest()` vertices transfers to any posed mesh by index.
    """

    faces: np.ndarray  # (F, 3) int32
    strongest_joint: np.ndarray  # (V,) index into JOINT_NAMES of the dominant skinning joint
    part_labels: np.ndarray  # (V,) index into PART_NAMES
    face_uv: np.ndarray | None = None  # (V, 2), set by _init_face_uv

    def __init__(self) -> None:
        # A Body is shared across requests; backends that hold mutable shape
        # state serialise posing through this lock.
        self._lock = threading.Lock()

    @abstractmethod
    def _pose_vertices(self, pose: Pose, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ungrounded (V, 3) vertices and (22, 3) joints, float64."""

    def posed(self, pose: Pose, shape: np.ndarray | None = None) -> PosedMesh:
        """The body in `pose` with `shape` (10 coefficients, default zeros), grounded."""
        if not isinstance(pose, Pose):
            raise PoseError(f"pose must be an omfa.pose.body.Pose, got {type(pose).__name__}")
        betas = np.zeros(NUM_SHAPE) if shape is None else _as_array(shape, (NUM_SHAPE,), "shape")
        with self._lock:
            vertices, joints = self._pose_vertices(pose, betas)
        vertices, joints = ground(vertices, joints)
        return PosedMesh(vertices, self.faces, self.part_labels, joints, face_uv=self.face_uv)

    def rest(self, shape: np.ndarray | None = None) -> PosedMesh:
        """The rest T-pose, same vertex order as `posed`."""
        return self.posed(Pose.zero(), shape)

    def _init_face_uv(self) -> None:
        """Compute the face texture coordinates once, from the rest pose at shape 0."""
        rest_vertices, rest_joints = self._pose_vertices(Pose.zero(), np.zeros(NUM_SHAPE))
        self.face_uv = face_texcoords(rest_vertices, self.part_labels, rest_joints[JOINT_NAMES.index("head")])

    def rest_joints(self, shape: np.ndarray | None = None) -> np.ndarray:
        """(22, 3) rest joint positions relative to the pelvis, for `forward_kinematics`."""
        joints = self.rest(shape).joints.astype(np.float64)
        return joints - joints[0]


class MannequinBody(Body):
    """The mannequin-x wooden mannequin (24,256 vertices); no licensed files needed."""

    def __init__(self) -> None:
        super().__init__()
        from mannequin import Mannequin

        self._model = Mannequin("wooden")
        self._shape = np.zeros(NUM_SHAPE)
        self._rest = self._model.rest_pose(dtype=np.float64)
        names = [_mannequin_joint_name(name) for name in self._model.joint_names]
        self._body_joints = np.array([names.index(name) for name in JOINT_NAMES])
        self.faces = np.ascontiguousarray(self._model.faces, dtype=np.int32)
        # mannequin-x 0.3.0 keeps its four strongest skinning influences per
        # vertex (rigid parts pinned to one joint) in these attributes; the
        # public API exposes no skinning weights.
        indices, weights = self._model._skin_joint_indices, self._model._skin_weights
        strongest = indices[np.arange(len(indices)), np.argmax(weights, axis=1)]
        to_body = np.array([JOINT_NAMES.index(_body_joint_of(name)) for name in names])
        self.strongest_joint = to_body[strongest]
        self.part_labels = part_labels_from_joints(self.strongest_joint)
        self._init_face_uv()

    def _pose_vertices(self, pose: Pose, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not np.array_equal(shape, self._shape):
            self._model.reshape(shape.astype(np.float32))
            self._shape = shape.copy()
            self._rest = self._model.rest_pose(dtype=np.float64)
        params = dict(self._rest)
        params["shape"] = self._shape
        params["body_pose"] = pose.body_pose
        # SMPL-X global_orient rotates about the pelvis: mannequin-x's pelvis_rotation.
        params["pelvis_rotation"] = pose.global_orient
        transforms = self._model.joint_transforms(params)  # (54, 4, 4)
        vertices = self._model._skin_vertices(transforms)  # same as vertices(), without recomputing joints
        return vertices, transforms[self._body_joints, :3, 3]


def _mannequin_joint_name(name: str) -> str:
    """mannequin-x 'L_Shoulder' / 'Spine1' -> SMPL-X 'left_shoulder' / 'spine1'."""
    side = {"L_": "left_", "R_": "right_"}.get(name[:2], "")
    return (side + name[2:] if side else name).lower()


def _body_joint_of(name: str) -> str:
    """Finger and hand joints skin to the hand: map them to the wrist."""
    if name in JOINT_NAMES:
        return name
    return ("left" if name.startswith("left_") else "right") + "_wrist"


SMPLX_HELP = (
    "download the SMPL-X model files from https://smpl-x.is.tue.mpg.de (free registration, "
    "'Download SMPL-X v1.1 (NPZ+PKL)') and put SMPLX_NEUTRAL.npz in that folder (or in its smplx/ "
    "subfolder), then point OMFA_SMPLX_DIR at the folder; or use the default mannequin body"
)


def find_smplx_file(model_dir: str | os.PathLike | None) -> Path:
    """Locate SMPLX_NEUTRAL.npz (or .pkl) in `model_dir` or $OMFA_SMPLX_DIR."""
    folder = model_dir if model_dir is not None else os.environ.get("OMFA_SMPLX_DIR")
    if not folder:
        raise BodyModelError(f"no SMPL-X folder given (argument or OMFA_SMPLX_DIR); {SMPLX_HELP}")
    folder = Path(folder).expanduser()
    for candidate in (folder, folder / "smplx"):
        for suffix in (".npz", ".pkl"):
            path = candidate / f"SMPLX_NEUTRAL{suffix}"
            if path.is_file():
                return path
    raise BodyModelError(f"no SMPLX_NEUTRAL.npz in {folder}; {SMPLX_HELP}")


class SMPLXBody(Body):
    """The SMPL-X neutral model through the `smplx` package (10,475 vertices)."""

    def __init__(self, model_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        import smplx
        import torch

        path = find_smplx_file(model_dir)
        self._torch = torch
        try:
            self._model = smplx.SMPLX(
                str(path.parent),
                ext=path.suffix[1:],
                gender="neutral",
                num_betas=NUM_SHAPE,
                use_pca=False,
                flat_hand_mean=False,
            )
        except (KeyError, ValueError, OSError, RuntimeError) as error:
            raise BodyModelError(f"{path} is not a valid SMPL-X model file ({error}); {SMPLX_HELP}") from None
        self.faces = np.ascontiguousarray(self._model.faces, dtype=np.int32)
        # SMPL-X has 55 joints: 0..21 body, 22 jaw, 23/24 eyes, then 15 per hand.
        strongest = self._model.lbs_weights.argmax(dim=1).numpy()
        to_body = np.arange(55)
        to_body[22:25] = JOINT_NAMES.index("head")
        to_body[25:40] = JOINT_NAMES.index("left_wrist")
        to_body[40:55] = JOINT_NAMES.index("right_wrist")
        self.strongest_joint = to_body[strongest]
        self.part_labels = part_labels_from_joints(self.strongest_joint)
        self._init_face_uv()

    def _pose_vertices(self, pose: Pose, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch

        def tensor(array: np.ndarray) -> Any:
            return torch.as_tensor(np.asarray(array, dtype=np.float32).reshape(1, -1))

        with torch.no_grad():
            output = self._model(
                betas=tensor(shape),
                global_orient=tensor(pose.global_orient),
                body_pose=tensor(pose.body_pose),
                return_verts=True,
            )
        return output.vertices[0].double().numpy(), output.joints[0, :22].double().numpy()


def load_body(kind: str = "mannequin", model_dir: str | os.PathLike | None = None) -> Body:
    """Build a body backend: "mannequin" (default) or "smplx" (needs model files)."""
    if kind == "mannequin":
        return MannequinBody()
    if kind == "smplx":
        return SMPLXBody(model_dir)
    raise BodyModelError(f"unknown body kind {kind!r}; use 'mannequin' or 'smplx'")
