"""Texture cylinders: how a body region's rest-pose surface maps to a texture panel.

A region (trunk, an arm, a leg) is unrolled around an axis: u goes once
around (0.5 at a chosen front direction, the seam opposite), v runs along the
axis in units of the region's length. Used on the rest pose only, the
mapping then travels with the vertices to any pose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cylinder:
    """A rest-pose texture cylinder: axis from `origin` along `axis`, angle 0 towards `front`."""

    origin: np.ndarray  # (3,)
    axis: np.ndarray  # (3,) unit, pointing down the region (v grows along it)
    front: np.ndarray  # (3,) unit, orthogonal to axis: u = 0.5 there
    length_m: float
    circumference_m: float

    def uv(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) rest points -> (N, 2): u in [0, 1) around (0.5 at `front`), v = distance / length."""
        rel = points - self.origin
        along = rel @ self.axis
        side = np.cross(self.front, self.axis)  # the front's right-hand side as seen from outside
        angle = np.arctan2(rel @ side, rel @ self.front)  # 0 at the front, +-pi at the seam
        return np.stack([angle / (2 * np.pi) + 0.5, along / self.length_m], axis=1)


def trunk_cylinder(points: np.ndarray, y_top: float, y_bottom: float) -> Cylinder:
    """A vertical cylinder down the trunk from `y_top`, facing +z (the body's front)."""
    down = np.array([0.0, -1.0, 0.0])
    origin = np.array([0.0, y_top, float(np.median(points[:, 2]))])
    return Cylinder(origin, down, np.array([0.0, 0.0, 1.0]), y_top - y_bottom, _circumference(points, origin, down))


def limb_cylinder(start: np.ndarray, end: np.ndarray, front: Sequence[float], points: np.ndarray) -> Cylinder:
    """A cylinder from joint `start` to joint `end`, u = 0.5 towards `front` (made orthogonal to the axis)."""
    axis = (end - start) / np.linalg.norm(end - start)
    front_dir = _orthogonal(np.asarray(front, dtype=np.float64), axis)
    return Cylinder(start, axis, front_dir, float(np.linalg.norm(end - start)), _circumference(points, start, axis))


def _orthogonal(direction: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """`direction` with its component along `axis` removed, normalised."""
    out = direction - (direction @ axis) * axis
    return out / np.linalg.norm(out)


def _circumference(points: np.ndarray, origin: np.ndarray, axis: np.ndarray) -> float:
    """Mean circumference 2*pi*r of the points around the axis through `origin`."""
    rel = points - origin
    radial = rel - np.outer(rel @ axis, axis)
    return float(2 * np.pi * np.median(np.linalg.norm(radial, axis=1)))
