"""Where a person or a garment goes on the canvas: pure geometry.

The person canvas shows a whole standing body at a fixed scale, framed like
the renders of ``omfa.pose.render``: the frame spans 2.3 m vertically, the
floor 0.08 m above its bottom edge, the pelvis on the vertical centre line.
A photographed person of unknown height is given the average stature of the
rendered people (1.72 m): head top to soles spans ``PERSON_HEIGHT_FRACTION``
of the canvas height, the soles on the floor row. A photo is mapped onto it
by one scale and one offset (no rotation): the person's standing height in
pixels is measured from the head top to the soles when the feet are
visible, and extrapolated from the lowest visible body landmark with average
adult proportions when they are not (a half-body photo keeps the same
scale; the canvas below the visible part stays empty).
Flat garments are scaled to fill ``GARMENT_FILL`` of the canvas, centred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omfa.mediapipe_models import POSE_LANDMARK_NAMES

# The render camera of omfa.pose.render (VIEW_HEIGHT_M, FLOOR_MARGIN_M), and
# the mean height of the synthetic fitting room's people (1.6 to 1.85 m): the scale the model learned.
VIEW_HEIGHT_M, FLOOR_MARGIN_M, STATURE_M = 2.3, 0.08, 1.72
# Head top to soles, and the floor row, as fractions of the canvas height.
PERSON_HEIGHT_FRACTION = STATURE_M / VIEW_HEIGHT_M
FLOOR_FRACTION = 1.0 - FLOOR_MARGIN_M / VIEW_HEIGHT_M
# A flat garment's longer extent (relative to the canvas) fills this fraction.
GARMENT_FILL = 0.90
# A landmark counts as seen above this visibility.
MIN_VISIBILITY = 0.5

# Distance below the top of the head, as a fraction of standing height, of
# BlazePose landmarks on an average adult: anthropometric heights (hip joint
# 0.52, knee 0.285 of stature above the floor) checked against BlazePose on a
# rendered SMPL-X-proportioned body, whose joint-centre landmarks sit lower
# than the anthropometric shoulder (acromion, 0.818) and higher than the
# ankle bone (0.039) points. Ordered from the head down: the lowest group
# seen sets the scale, unless the head-to-shoulder distance implies a taller
# person.
STATURE_FRACTION: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("shoulders", ("left_shoulder", "right_shoulder"), 0.19),
    ("hips", ("left_hip", "right_hip"), 0.48),
    ("knees", ("left_knee", "right_knee"), 0.71),
    ("ankles", ("left_ankle", "right_ankle"), 0.94),
    ("feet", ("left_heel", "right_heel", "left_foot_index", "right_foot_index"), 0.985),
)
SHOULDER_FRACTION = STATURE_FRACTION[0][2]
NOSE_FRACTION = 0.085
# The height estimated from the lowest landmarks is at least this fraction of
# the one from head top to shoulders.
SHOULDER_FLOOR = 0.85
# Shoulder centre to hip centre, a posture-independent length.
TORSO_FRACTION = 0.29

_IDX = {name: i for i, name in enumerate(POSE_LANDMARK_NAMES)}


class FramingError(ValueError):
    """The photo does not show enough of a person to place it on the canvas."""


@dataclass(frozen=True)
class Placement:
    """canvas_xy = source_xy * scale + offset (pixels, x right, y down)."""

    scale: float
    offset: tuple[float, float]

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Map (N, 2) source pixel coordinates to canvas pixels: (N, 2) float32."""
        return np.asarray(xy, np.float32) * self.scale + np.asarray(self.offset, np.float32)


@dataclass(frozen=True)
class PersonFrame:
    """How a photographed person maps onto the canvas.

    Attributes:
        placement: source pixels to canvas pixels.
        height_px: estimated standing height in source pixels.
        head_top_y: source row of the top of the head.
        visible_to: lowest landmark group seen ("feet", "ankles", "knees",
            "hips" or "shoulders").
        full_body: the whole body, head to feet, is in the photo.
        note: a sentence for the user about how the photo was framed.
    """

    placement: Placement
    height_px: float
    head_top_y: float
    visible_to: str
    full_body: bool
    note: str


def _seen(xy: np.ndarray, visibility: np.ndarray, hw: tuple[int, int], names) -> np.ndarray:
    """Indices of landmarks in ``names`` that are visible and inside the image."""
    h, w = hw
    idx = np.array([_IDX[n] for n in names])
    inside = (xy[idx, 0] >= 0) & (xy[idx, 0] < w) & (xy[idx, 1] >= 0) & (xy[idx, 1] < h)
    return idx[inside & (visibility[idx] > MIN_VISIBILITY)]


def head_top(mask: np.ndarray, nose_xy: np.ndarray, head_width: float) -> float | None:
    """Row of the top of the head: climb the mask upward from the nose within
    a band of ``head_width`` around it. None when the nose is off the mask or
    the head touches the image top (its top is then not in the photo)."""
    h, w = mask.shape
    half = max(1, int(round(head_width / 2)))
    x0, x1 = max(0, int(nose_xy[0]) - half), min(w, int(nose_xy[0]) + half + 1)
    y = int(np.clip(nose_xy[1], 0, h - 1))
    rows = (mask[: y + 1, x0:x1] > 0.5).any(axis=1)  # (y + 1,) person in the band
    if x1 <= x0 or not rows[y]:
        return None
    gaps = np.flatnonzero(~rows)
    top = int(gaps[-1]) + 1 if gaps.size else 0
    return None if top == 0 else float(top)


def frame_person(
    xy: np.ndarray,
    visibility: np.ndarray,
    mask: np.ndarray,
    canvas_hw: tuple[int, int],
    height_fraction: float = PERSON_HEIGHT_FRACTION,
    floor_fraction: float = FLOOR_FRACTION,
) -> PersonFrame:
    """Scale and offset that place a photographed person on the canvas.

    Args:
        xy: (33, 2) BlazePose landmarks in source pixels.
        visibility: (33,) landmark visibility in [0, 1].
        mask: (H, W) float person matte of the source image.
        canvas_hw: (height, width) of the canvas.
        height_fraction: head-to-soles height over canvas height.
        floor_fraction: row of the soles over canvas height.

    Raises:
        FramingError: the head or both shoulders are not visible.
    """
    hw = mask.shape
    shoulders = _seen(xy, visibility, hw, ("left_shoulder", "right_shoulder"))
    nose = _seen(xy, visibility, hw, ("nose",))
    if nose.size == 0 or shoulders.size < 2:
        raise FramingError(
            "the photo must show the person's face and both shoulders; upload a photo taken "
            "from the front, at least from the head down to the chest"
        )
    nose_xy = xy[_IDX["nose"]]
    shoulder_mid = xy[shoulders].mean(axis=0)
    shoulder_width = float(np.linalg.norm(xy[shoulders[0]] - xy[shoulders[1]]))
    top = head_top(mask, nose_xy, 0.4 * shoulder_width)
    if top is None:  # from the nose, with the nose-to-shoulders distance as the unit
        stature = max(shoulder_mid[1] - nose_xy[1], 1.0) / (SHOULDER_FRACTION - NOSE_FRACTION)
        top = float(nose_xy[1] - NOSE_FRACTION * stature)
    # Predicted (not necessarily visible) row of each group, head down.
    group_y = [float(np.mean([xy[_IDX[n], 1] for n in names])) for _, names, _ in STATURE_FRACTION]
    group, low_y, fraction = "shoulders", float(shoulder_mid[1]), SHOULDER_FRACTION
    for k in range(1, len(STATURE_FRACTION)):
        # Stop where the predicted body folds back on itself (a knee above the
        # hips): the model is then guessing at a body cut by the frame.
        if group_y[k] <= group_y[k - 1]:
            break
        name, names, frac = STATURE_FRACTION[k]
        seen = _seen(xy, visibility, hw, names)
        if seen.size:
            group, low_y, fraction = name, float(xy[seen, 1].max()), frac
    # Head top to shoulders is always seen; a lower group implying a much
    # smaller height is implausible (bent legs or landmarks guessed past the
    # frame). The margin allows for head size and tilt.
    height = max(low_y - top, 1.0) / fraction
    height = max(height, SHOULDER_FLOOR * (shoulder_mid[1] - top) / SHOULDER_FRACTION)
    note = ""
    hips = _seen(xy, visibility, hw, ("left_hip", "right_hip"))
    if hips.size == 2:
        torso = float(np.linalg.norm(xy[hips].mean(axis=0) - shoulder_mid)) / TORSO_FRACTION
        if torso > 1.15 * height:  # legs bent or foreshortened: trust the torso
            height, note = torso, " The person seems to sit or bend, so the torso set the scale."
    full_body = group in ("feet", "ankles") and not (mask[-1] > 0.5).any()
    # The renders centre the pelvis; without hips, the shoulders' centre.
    axis_x = float(xy[hips, 0].mean()) if hips.size == 2 else float(shoulder_mid[0])
    ch, cw = canvas_hw
    scale = height_fraction * ch / height
    offset = (cw / 2 - scale * axis_x, floor_fraction * ch - scale * (top + height))
    if full_body:
        note = "Whole body found." + note
    else:
        note = (
            f"Half-body photo (visible down to the {group}): scaled from the visible part "
            "with average body proportions; the rest of the canvas stays empty." + note
        )
    return PersonFrame(Placement(scale, offset), height, top, group, full_body, note)


def frame_object(box: tuple[int, int, int, int], canvas_hw: tuple[int, int], fill: float = GARMENT_FILL) -> Placement:
    """Centre a bounding box (x0, y0, x1, y1) in the canvas, its limiting side filling ``fill``."""
    x0, y0, x1, y1 = box
    ch, cw = canvas_hw
    scale = fill * min(ch / max(y1 - y0, 1), cw / max(x1 - x0, 1))
    return Placement(scale, (cw / 2 - scale * (x0 + x1) / 2, ch / 2 - scale * (y0 + y1) / 2))
