"""Image metrics of evaluation, on uint8 (H, W, 3) images of one size.

- `psnr`: 10 log10(255^2 / MSE) in dB over all pixels, or over a mask.
- `ssim`: SSIM (7x7 windows, per channel; scikit-image), averaged over all
  pixels or over a mask.
- `colour_error`: mean RGB distance (0-255 units) on the garment pixels.
- `pattern_fidelity` ("pattern"): does the output reproduce the garment's
  print (stripes, checks, dots) and folds, not only its mean colour? Both
  images are reduced to luminance Y = 0.299 R + 0.587 G + 0.114 B (ITU-R
  BT.601) and high-passed, Y - G_sigma * Y with a Gaussian blur of sigma =
  2 px; the score is the Pearson correlation of the two high-pass images
  over the ground-truth garment mask M. Two details keep the garment's
  outline (its contrast with the skin or background around it) from
  counting as print: M loses its one-pixel rim, whose anti-aliased pixels
  are blended with the surroundings, and the blur is taken inside M
  (normalised convolution, G * (Y M) / G * M). Against the synthetic test
  split's shop images, with a plain blur of the whole image a flat-colour
  silhouette scored 0.37 and an unrelated garment 0.36; with both details
  they score 0.01, while the truth blurred by 0.7 px keeps 0.77. 1 is the
  exact print, 0 no relation (a flat, print-less prediction scores exactly
  0), -1 the inverted print. NaN when M (after the rim is removed) is empty
  or the truth is flat inside it: a plain garment has no print to reproduce.
- `silhouette_iou` ("iou", try-off): the predicted shop image's garment mask,
  pixels with any channel below `GARMENT_THRESHOLD` = 245 (more than 10
  levels off the white background), against the ground-truth garment mask
  (the dataset's `mask_*` of that shop image): |P & T| / |P | T|. NaN when
  both are empty. The threshold sits close to white because pale fabrics and
  the light colour of many prints are close to white: at 240 a test-split
  garment printed partly in near-white scores only 0.61 against its own
  mask. The ground-truth shop images themselves score 0.95 on average
  (0.92 at worst), not 1: their anti-aliased edge pixels are tinted but lie
  outside the rendered mask.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion, gaussian_filter
from skimage.metrics import structural_similarity

PATTERN_SIGMA = 2.0  # px: keeps prints finer than a few pixels, drops shading and mean colour
GARMENT_THRESHOLD = 245  # a shop image pixel with any channel below this is garment, not background
_LUMA = np.array([0.299, 0.587, 0.114])
_FLAT = 1e-6  # high-pass standard deviation (0-255 luminance units) below which an image is flat


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over all pixels, or over `mask` (H, W) bool."""
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = err[mask].mean() if mask is not None else err.mean()
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SSIM (7x7 windows, per channel), averaged over all pixels or over `mask`."""
    _, full = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    smap = full.mean(axis=2)
    return float(smap[mask].mean() if mask is not None else smap.mean())


def colour_error(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean RGB distance (0-255 units) between the images on the garment pixels."""
    diff = a.astype(np.float64)[mask] - b.astype(np.float64)[mask]
    return float(np.linalg.norm(diff, axis=-1).mean()) if mask.any() else float("nan")


def high_pass(image: np.ndarray, mask: np.ndarray, sigma: float = PATTERN_SIGMA) -> np.ndarray:
    """Luminance minus its Gaussian blur taken inside `mask`: (H, W) float64, the fine detail (0 outside)."""
    luma = image.astype(np.float64) @ _LUMA
    weight = mask.astype(np.float64)
    # normalised convolution: the blur averages garment pixels only, so the surroundings do not leak in
    blurred = gaussian_filter(luma * weight, sigma, mode="mirror") / np.maximum(
        gaussian_filter(weight, sigma, mode="mirror"), 1e-12
    )
    return np.where(mask, luma - blurred, 0.0)


def pattern_fidelity(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of the high-pass luminance of `pred` and `truth` inside `mask` (see the module docstring)."""
    inner = binary_erosion(mask)  # without the anti-aliased rim
    if not inner.any():
        return float("nan")
    p, t = high_pass(pred, inner)[inner], high_pass(truth, inner)[inner]
    p, t = p - p.mean(), t - t.mean()
    if t.std() < _FLAT:
        return float("nan")  # a plain garment: no print to reproduce
    if p.std() < _FLAT:
        return 0.0  # the truth has a print and the prediction none
    return float((p * t).sum() / np.sqrt((p * p).sum() * (t * t).sum()))


def garment_mask(shop_image: np.ndarray, threshold: int = GARMENT_THRESHOLD) -> np.ndarray:
    """(H, W) bool: the pixels of a shop image (garment on white) that are garment."""
    return (shop_image < threshold).any(axis=-1)


def silhouette_iou(pred: np.ndarray, truth_mask: np.ndarray) -> float:
    """IoU of the predicted shop image's garment mask and the ground-truth garment mask (NaN if both are empty)."""
    predicted = garment_mask(pred)
    union = (predicted | truth_mask).sum()
    return float((predicted & truth_mask).sum() / union) if union else float("nan")
