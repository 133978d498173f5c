"""From an upload to a canvas slot: the portrait (``reference``) and the garment source.

``prepare_portrait`` loads the photo, finds exactly one person, cuts the
background away and places the person on the white canvas at the fixed
person scale; it returns the BlazePose landmarks for the pose estimator.
Both take the canvas size (``size_hw``) from the caller: it is the model's
(``OMFAPipeline.canvas_hw``), so one preprocessing serves every checkpoint.
``prepare_garment`` tells a flat garment photo from a photo of a dressed
person (a body pose or a face is found or not): a flat garment is cut out and
centred like a shop image; a dressed person is prepared like a portrait, and
the pipeline extracts the garment with try-off before trying it on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from omfa.canvas import BACKGROUND_RGB
from omfa.imaging.framing import (
    MIN_VISIBILITY,
    FramingError,
    Placement,
    frame_object,
    frame_person,
)
from omfa.imaging.loading import ImageInputError, ImageSource, flatten_alpha, load_image
from omfa.imaging.matting import (
    U2NetP,
    background_spread,
    composite,
    default_u2netp,
    foreground_box,
    remove_background,
)
from omfa.mediapipe_models import (
    POSE_LANDMARK_NAMES,
    MediapipeModels,
    People,
    PoseLandmarks,
    default_models,
)

# A cut-out covering less than this fraction of the photo is nothing; more
# than the upper bound means no background was told apart.
MIN_FOREGROUND, MAX_FOREGROUND = 0.005, 0.97
# The person must be at least this tall in the photo (pixels, head to soles,
# estimated): below it the canvas would show an upscaled blur.
MIN_PERSON_HEIGHT = 96
# A background is plain (a seamless backdrop, a shop photo, the fitting room's white) when its
# pixels stay this close to one colour (`background_spread`, summed over R, G and B): shop
# photos and renders measure 0 to 5, real scenes 50 and more (skimage's cat 82, coffee cup 68,
# rocket 51, the astronaut 96), a clock on a painted wall 27.
PLAIN_BACKGROUND_SPREAD = 24.0
# The lower garment counts as seen when the photo shows the person down to one of these.
LOWER_BODY_GROUPS = ("knees", "ankles", "feet")
_SHOULDERS = [POSE_LANDMARK_NAMES.index("left_shoulder"), POSE_LANDMARK_NAMES.index("right_shoulder")]
_METHOD_NAMES = {
    "u2netp": "U^2-Net (u2netp)",
    "selfie": "MediaPipe selfie segmentation",
    "alpha": "the upload's own transparency",
}


@dataclass(frozen=True)
class PreparedPortrait:
    """A portrait placed on the canvas as the ``reference`` slot.

    Attributes:
        image: (H, W, 3) uint8 on the white background, (H, W) = the ``size_hw`` asked for.
        alpha: (H, W) float32 person matte on the canvas.
        pose: BlazePose landmarks of the person in the loaded photo.
        keypoints: (33, 2) float32 landmark pixels on the canvas.
        full_body: head to feet were in the photo.
        info: sentences for the user (framing, background method).
        visible_to: the lowest body part seen ("shoulders", "hips", "knees", "ankles", "feet").
        photo: a photograph of a real person rather than a render like the fitting room's: a face
            was detected (the rendered mannequins have none) or the background is not plain.
    """

    image: np.ndarray
    alpha: np.ndarray
    pose: PoseLandmarks
    keypoints: np.ndarray
    full_body: bool
    info: str
    visible_to: str
    photo: bool

    @property
    def lower_body_visible(self) -> bool:
        """The photo shows the person down to at least the knees: their lower garment is in it."""
        return self.visible_to in LOWER_BODY_GROUPS


@dataclass(frozen=True)
class PreparedGarment:
    """A garment source.

    Attributes:
        kind: "flat" (a garment photo) or "person" (a dressed person, to be
            passed through try-off first).
        image: (H, W, 3) uint8 canvas: the centred garment for "flat", the
            person as a reference slot for "person".
        alpha: (H, W) float32 matte on the canvas.
        portrait: the prepared person when kind == "person", else None.
        info: sentences for the user.
    """

    kind: str
    image: np.ndarray
    alpha: np.ndarray
    portrait: PreparedPortrait | None
    info: str


def warm_up(mediapipe: MediapipeModels | None = None, u2netp: U2NetP | None = None) -> None:
    """Build and run every model once (about 1 s of CPU), so that a server's
    first upload is as fast as the next ones."""
    blank = np.full((256, 192, 3), 255, np.uint8)
    (mediapipe or default_models()).people(blank)
    (u2netp or default_u2netp()).probability(blank)


def place_on_canvas(
    rgb: np.ndarray, alpha: np.ndarray, placement: Placement, size_hw: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a cut-out onto the white canvas.

    Args:
        rgb: (h, w, 3) uint8 source; alpha: (h, w) float32 matte.
        placement: source pixels to canvas pixels.
        size_hw: (H, W) of the canvas.

    Returns:
        canvas rgb (H, W, 3) uint8 composited on white, canvas alpha (H, W) float32.
    """
    ch, cw = _check_size(size_hw)
    h, w = alpha.shape
    s, (ox, oy) = placement.scale, placement.offset
    # The canvas rectangle covered by the source, in whole canvas pixels.
    x0, y0 = max(0, int(np.ceil(ox))), max(0, int(np.ceil(oy)))
    x1, y1 = min(cw, int(np.floor(ox + s * w))), min(ch, int(np.floor(oy + s * h)))
    out_rgb = np.zeros((ch, cw, 3), np.uint8)
    out_alpha = np.zeros((ch, cw), np.float32)
    if x1 > x0 and y1 > y0:
        box = tuple(
            float(np.clip(v, 0, lim))
            for v, lim in (((x0 - ox) / s, w), ((y0 - oy) / s, h), ((x1 - ox) / s, w), ((y1 - oy) / s, h))
        )
        rgba = Image.fromarray(np.dstack([rgb, np.rint(alpha * 255).astype(np.uint8)]))
        # Pillow resamples RGBA premultiplied: background colours do not bleed
        # into the edges.
        patch = np.asarray(rgba.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS, box=box))
        out_rgb[y0:y1, x0:x1] = patch[..., :3]
        out_alpha[y0:y1, x0:x1] = patch[..., 3] / 255.0
    return composite(out_rgb, out_alpha, BACKGROUND_RGB), out_alpha


def _check_size(size_hw: Sequence[int]) -> tuple[int, int]:
    """``size_hw`` as (height, width), or a ValueError that says what to pass."""
    try:
        height, width = (int(v) for v in size_hw)
    except (TypeError, ValueError):
        raise ValueError(
            f"size_hw is {size_hw!r}; pass the canvas size as (height, width), e.g. pipe.canvas_hw"
        ) from None
    if height < 1 or width < 1:
        raise ValueError(f"size_hw is {height}x{width}; pass a positive (height, width), e.g. pipe.canvas_hw")
    return height, width


def _one_person(count: int, what: str) -> None:
    if count > 1:
        raise ImageInputError(f"the {what} shows {count} people; upload a photo of one person alone (or crop it)")


def _portrait_from_rgb(
    rgb: np.ndarray,
    people: People,
    mediapipe: MediapipeModels,
    u2netp: U2NetP | None,
    what: str,
    size_hw: tuple[int, int],
) -> PreparedPortrait:
    """Cut out and frame the one person of ``rgb`` (H, W, 3) found as ``people``."""
    _one_person(people.count, what)
    if people.pose is None:
        raise ImageInputError(
            f"no person found in the {what}; upload a photo of one person seen from the front, "
            "at least from the head down to the chest"
        )
    cut = remove_background(rgb, u2netp=u2netp, mediapipe=mediapipe)
    h, w = rgb.shape[:2]
    xy = people.pose.pixel_xy(h, w)
    try:
        frame = frame_person(xy, people.pose.visibility, cut.alpha, size_hw)
    except FramingError as err:
        raise ImageInputError(f"{what}: {err}") from err
    if frame.height_px < MIN_PERSON_HEIGHT:
        raise ImageInputError(
            f"the person in the {what} is only about {frame.height_px:.0f} px tall; upload a "
            f"larger or closer photo (at least {MIN_PERSON_HEIGHT} px from head to feet)"
        )
    image, alpha = place_on_canvas(cut.rgb, cut.alpha, frame.placement, size_hw)
    info = f"{frame.note} Background removed with {_METHOD_NAMES[cut.method]}."
    photo = bool(people.faces) or background_spread(cut.rgb, cut.alpha) > PLAIN_BACKGROUND_SPREAD
    return PreparedPortrait(
        image, alpha, people.pose, frame.placement.apply(xy), frame.full_body, info, frame.visible_to, photo
    )


def prepare_portrait(
    source: ImageSource,
    *,
    size_hw: Sequence[int],
    mediapipe: MediapipeModels | None = None,
    u2netp: U2NetP | None = None,
    what: str = "portrait",
) -> PreparedPortrait:
    """Load a portrait and place its one person on a ``size_hw`` canvas (the ``reference`` slot).
    ``what`` names the upload in messages ("portrait", "photo").

    Raises:
        ImageInputError: unreadable upload, no person, several people, or too
            little of the person visible; the message says what to upload.
    """
    size_hw = _check_size(size_hw)
    mediapipe = mediapipe or default_models()
    rgb = np.asarray(load_image(source))
    return _portrait_from_rgb(rgb, mediapipe.people(rgb), mediapipe, u2netp, what, size_hw)


def prepare_garment(
    source: ImageSource,
    *,
    size_hw: Sequence[int],
    mediapipe: MediapipeModels | None = None,
    u2netp: U2NetP | None = None,
) -> PreparedGarment:
    """Load a garment source, decide whether it is a flat garment or a dressed person, and place
    it on a ``size_hw`` canvas.

    A photo counts as a dressed person when a body pose with both shoulders
    visible is found in it. Otherwise it must show one object on a plain background
    (`PLAIN_BACKGROUND_SPREAD`), as a shop photo does: no person detector says "garment", so
    an animal, a landscape or a room, whose background is not plain, is refused rather than
    worn as a top.

    Raises:
        ImageInputError: unreadable upload, several people, or no garment found.
    """
    size_hw = _check_size(size_hw)
    mediapipe = mediapipe or default_models()
    loaded = load_image(source, keep_alpha=True)
    rgb = np.asarray(flatten_alpha(loaded) if loaded.mode == "RGBA" else loaded)
    people = mediapipe.people(rgb)
    _one_person(people.count, "garment photo")
    if people.pose is not None and bool((people.pose.visibility[_SHOULDERS] > MIN_VISIBILITY).all()):
        portrait = _portrait_from_rgb(rgb, people, mediapipe, u2netp, "garment photo", size_hw)
        return PreparedGarment(
            "person",
            portrait.image,
            portrait.alpha,
            portrait,
            "A dressed person: the garment is extracted first (try-off). " + portrait.info,
        )
    if people.count:
        raise ImageInputError(
            "the garment photo shows a person but not their upper body; upload the garment laid "
            "flat, or a photo of someone wearing it from the head down to at least the hips"
        )
    cut = remove_background(np.asarray(loaded), u2netp=u2netp, mediapipe=mediapipe)
    covered = float((cut.alpha > 0.5).mean())
    if covered < MIN_FOREGROUND:
        raise ImageInputError(
            "no garment found in the garment photo; upload a photo of the garment laid flat or "
            "on a hanger, against a plain background"
        )
    if covered > MAX_FOREGROUND:
        raise ImageInputError(
            "the garment photo shows no background around the garment; upload a photo with "
            "the whole garment visible on a plain background"
        )
    if background_spread(cut.rgb, cut.alpha) > PLAIN_BACKGROUND_SPREAD:
        raise ImageInputError(
            "no garment found in the garment photo: it shows no person, and no single object on a "
            "plain background (a scene, an animal or a busy background); upload the garment laid flat "
            "or on a hanger against a plain background, or a photo of a person wearing it"
        )
    box = foreground_box(cut.alpha)
    image, alpha = place_on_canvas(cut.rgb, cut.alpha, frame_object(box, size_hw), size_hw)
    return PreparedGarment(
        "flat", image, alpha, None, f"Flat garment. Background removed with {_METHOD_NAMES[cut.method]}."
    )
