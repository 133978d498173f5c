"""Preprocessing of user uploads: safe loading, background removal, canvas framing.

- ``loading``: untrusted bytes/paths/arrays to upright 8-bit RGB (``load_image``).
- ``matting``: u2netp background removal with a MediaPipe fallback.
- ``framing``: the geometry that places a person or a garment on the canvas.
- ``prepare``: the portrait (``reference`` slot) and the garment source.

Errors meant for the user are ``ImageInputError`` (a ValueError); the UI turns
them into ``gr.Error``.
"""

from omfa.imaging.framing import GARMENT_FILL, PERSON_HEIGHT_FRACTION, Placement
from omfa.imaging.loading import ImageInputError, flatten_alpha, load_image
from omfa.imaging.matting import Cutout, U2NetP, composite, remove_background
from omfa.imaging.prepare import (
    PreparedGarment,
    PreparedPortrait,
    place_on_canvas,
    prepare_garment,
    prepare_portrait,
    warm_up,
)

__all__ = [
    "GARMENT_FILL",
    "PERSON_HEIGHT_FRACTION",
    "Placement",
    "ImageInputError",
    "flatten_alpha",
    "load_image",
    "Cutout",
    "U2NetP",
    "composite",
    "remove_background",
    "PreparedGarment",
    "PreparedPortrait",
    "place_on_canvas",
    "prepare_garment",
    "prepare_portrait",
    "warm_up",
]
