"""The model's pose condition: a pose and a view yaw -> the map joined to the person slot.

One function serves the data generator (which stores every kind in each
sample) and the app (which renders the kind the loaded model was trained
with, `OMFATransformer.config.pose_condition`), so training and inference see
the same pixels. Both render the low-poly body (`omfa.pose.lowpoly`).

Kinds:
- "parts": flat part colours (`PoseRenderer.pose_map`): which limb is where
  and which side faces the camera;
- "surface": rest-body surface coordinates per pixel (`PoseRenderer.surface_map`),
  a dense correspondence like DensePose's: for every pixel, which point of the
  body (and so of a garment worn on it) lies there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # rendering loads OpenGL; training reads only the sample keys below
    from omfa.pose.body import PosedMesh
    from omfa.pose.render import PoseRenderer

# kind -> the key under which a synthetic sample stores it (the target view; "<key>_ref" is the portrait's view)
POSE_CONDITIONS: dict[str, str] = {"parts": "pose", "surface": "surface"}
DEFAULT_POSE_CONDITION = "parts"  # checkpoints that do not name one were trained on part colours


def check_kind(kind: str) -> str:
    """`kind`, or a ValueError that lists the valid ones."""
    if kind not in POSE_CONDITIONS:
        raise ValueError(f"unknown pose condition {kind!r}; choose one of {', '.join(POSE_CONDITIONS)}")
    return kind


def pose_condition(
    renderer: PoseRenderer, mesh: PosedMesh, yaw_deg: float, size_hw: Sequence[int], kind: str = DEFAULT_POSE_CONDITION
) -> np.ndarray:
    """The pose condition of `mesh` seen from `yaw_deg`: (H, W, 3) uint8 on black, H x W = `size_hw`."""
    if check_kind(kind) == "surface":
        return renderer.surface_map(mesh, float(yaw_deg), size_hw)
    return renderer.pose_map(mesh, float(yaw_deg), size_hw)


def sample_key(kind: str, view: str = "target") -> str:
    """The synthetic sample's key of this kind of map: view "target" (the person) or "reference" (the portrait)."""
    key = POSE_CONDITIONS[check_kind(kind)]
    return key if view == "target" else f"{key}_ref"
