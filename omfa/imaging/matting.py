"""Background removal: U^2-Net small (u2netp) on onnxruntime, MediaPipe fallback.

The u2netp weights are the official U^2-Net small model (MIT licence) that
rembg uses, shipped in ``assets/u2netp/u2netp.onnx`` (rembg's file with its
input size made free, see the folder's README). They are run
directly with onnxruntime rather than through rembg: importing rembg costs
45 s on a cold start (numba compiles pymatting's kernels) and rembg fetches
missing models over the network, while the u2netp pre- and post-processing
is a dozen lines. The preprocessing below is rembg's (``U2netpSession``):
Lanczos resize to a square, division by the image maximum, ImageNet
normalisation, at 224x224 rather than rembg's 320x320 (`U2NETP_SIZE`).
Unlike rembg, the sigmoid output is kept as a probability
instead of being min-max stretched, so an image with nothing salient gives
an empty mask rather than amplified noise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from omfa.canvas import BACKGROUND_RGB
from omfa.mediapipe_models import MediapipeModels, default_models

U2NETP_PATH = Path(__file__).resolve().parents[2] / "assets" / "u2netp" / "u2netp.onnx"
# The network's input side. 320 is rembg's; 224 costs 0.44x as much (measured side by side on
# this project's CPU) and its masks stay within IoU 0.95 of 320's on the example photos
# (tests/test_imaging.py): the app's slots are 128x96, far below either.
U2NETP_SIZE = 224
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


class BackgroundModelError(ValueError):
    """The u2netp model file is missing or cannot be loaded."""


@dataclass(frozen=True)
class Cutout:
    """An image and its foreground matte.

    Attributes:
        rgb: (H, W, 3) uint8, the input pixels unchanged.
        alpha: (H, W) float32 in [0, 1], 1 on the foreground.
        method: "u2netp", "selfie" (MediaPipe selfie segmentation) or
            "alpha" (the upload's own transparency).
    """

    rgb: np.ndarray
    alpha: np.ndarray
    method: str


def _checked_side(size: int) -> int:
    """A u2netp input side: the network pools five times, so a multiple of 32."""
    if size % 32 or size < 32:
        raise ValueError(f"u2netp input size is {size}; use a multiple of 32 (224 or rembg's 320)")
    return size


class U2NetP:
    """The u2netp salient-object model, loaded on first use (thread-safe)."""

    def __init__(self, model_path: str | Path = U2NETP_PATH, size: int = U2NETP_SIZE) -> None:
        self.model_path = Path(model_path)
        self.size = _checked_side(size)  # the square input side
        self._session = None
        self._lock = threading.Lock()

    def _get_session(self):
        with self._lock:
            if self._session is None:
                if not self.model_path.is_file():
                    raise BackgroundModelError(
                        f"u2netp model not found at {self.model_path}; restore "
                        "assets/u2netp/u2netp.onnx from the repository"
                    )
                import onnxruntime as ort

                try:
                    self._session = ort.InferenceSession(str(self.model_path), providers=["CPUExecutionProvider"])
                except Exception as err:  # onnxruntime raises its own error types
                    raise BackgroundModelError(
                        f"cannot load {self.model_path} ({err}); restore the file from the repository"
                    ) from err
            return self._session

    def probability(self, rgb: np.ndarray, size: int | None = None) -> np.ndarray:
        """Foreground probability at the network's input resolution: (size, size) float32.

        Args:
            rgb: (H, W, 3) uint8.
            size: the square input side, a multiple of 32 (default: this instance's `size`).
        """
        size = self.size if size is None else _checked_side(size)
        session = self._get_session()  # onnxruntime's run() is thread-safe
        small = Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS)
        x = np.asarray(small, np.float32)
        x = x / max(float(x.max()), 1e-6)
        x = (x - _MEAN) / _STD
        x = x.transpose(2, 0, 1)[None]  # (1, 3, size, size)
        out = session.run(None, {session.get_inputs()[0].name: x})[0]  # (1, 1, size, size), d1
        return np.clip(out[0, 0], 0.0, 1.0).astype(np.float32)

    def alpha(self, rgb: np.ndarray) -> np.ndarray:
        """Foreground probability resized to the image: (H, W) float32 in [0, 1]."""
        prob = Image.fromarray(self.probability(rgb))  # mode "F"
        full = prob.resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.BILINEAR)
        return np.clip(np.asarray(full, np.float32), 0.0, 1.0)


_default_u2netp: U2NetP | None = None
_default_lock = threading.Lock()


def default_u2netp() -> U2NetP:
    """The process-wide u2netp instance, built on first call."""
    global _default_u2netp
    with _default_lock:
        if _default_u2netp is None:
            _default_u2netp = U2NetP()
        return _default_u2netp


def remove_background(
    image: Image.Image | np.ndarray,
    *,
    method: str = "auto",
    u2netp: U2NetP | None = None,
    mediapipe: MediapipeModels | None = None,
) -> Cutout:
    """Separate the foreground of an RGB image from its background.

    Args:
        image: PIL image ("RGB" or "RGBA") or uint8 array (H, W, 3|4). An
            alpha channel with real transparency is used as the matte as is.
        method: "auto" (u2netp, MediaPipe selfie segmentation if the u2netp
            model cannot be loaded), "u2netp" or "selfie".
        u2netp, mediapipe: model holders; the shared defaults when None.

    Returns:
        A Cutout with rgb (H, W, 3) uint8 and alpha (H, W) float32.
    """
    if method not in ("auto", "u2netp", "selfie"):
        raise ValueError(f"method={method!r}; use 'auto', 'u2netp' or 'selfie'")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"image is {array.dtype} {array.shape}; pass an RGB(A) uint8 image of shape (H, W, 3|4)")
    rgb = np.ascontiguousarray(array[..., :3])
    if array.shape[2] == 4 and array[..., 3].min() < 255:
        return Cutout(rgb, array[..., 3].astype(np.float32) / 255.0, "alpha")
    if method in ("auto", "u2netp"):
        try:
            return Cutout(rgb, (u2netp or default_u2netp()).alpha(rgb), "u2netp")
        except BackgroundModelError:
            if method == "u2netp":
                raise
    return Cutout(rgb, (mediapipe or default_models()).selfie_mask(rgb), "selfie")


def composite(rgb: np.ndarray, alpha: np.ndarray, background: tuple[int, int, int] = BACKGROUND_RGB) -> np.ndarray:
    """Blend (H, W, 3) uint8 over a flat background with (H, W) alpha: (H, W, 3) uint8."""
    a = alpha[..., None].astype(np.float32)
    out = rgb.astype(np.float32) * a + np.asarray(background, np.float32) * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def foreground_box(alpha: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1), exclusive ends, of alpha > threshold; None if empty."""
    mask = alpha > threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def background_spread(rgb: np.ndarray, alpha: np.ndarray, threshold: float = 0.5) -> float:
    """How far the background of a cut-out is from one flat colour: the median, over the pixels
    with alpha <= threshold, of the summed |R|+|G|+|B| distance (0-765) to their median colour.

    A shop photo or a studio render on a seamless backdrop gives a few units (the median ignores
    the garment's shadow); a scene (a room, a lawn, a cat on a sofa) gives 50 or more. An image
    with no background at all gives 0.

    Args:
        rgb: (H, W, 3) uint8; alpha: (H, W) float matte in [0, 1].
    """
    background = rgb[alpha <= threshold].astype(np.int16)  # (N, 3)
    if background.shape[0] == 0:
        return 0.0
    median = np.median(background, axis=0)
    return float(np.median(np.abs(background - median).sum(axis=1)))
