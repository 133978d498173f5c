"""Safe loading of user uploads into upright 8-bit RGB images.

Every upload is untrusted. The loader reads at most ``max_bytes``, sniffs
text formats (SVG, HTML) and formats Pillow should not decode here (PDF,
PostScript, which would start Ghostscript; HEIC), lets Pillow parse only a
whitelist of raster formats, checks the header's pixel count before any
pixel is decoded (decompression bombs), decodes JPEGs at a reduced DCT scale
when they are large, and turns every decoder failure into an
:class:`ImageInputError` whose message tells the user what to upload instead.
The result is RGB (or RGBA with ``keep_alpha``), EXIF-upright, colour-managed
to sRGB when the file carries an ICC profile, and at most ``max_side`` pixels
on its longer side.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from omfa.canvas import BACKGROUND_RGB

# Raster formats Pillow may parse. Everything else (EPS, PDF, ICO, PSD, ...)
# is refused before a decoder runs. The JPEG parser also yields "MPO", the
# multi-picture JPEG of cameras.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
_DECODED_FORMATS = ALLOWED_FORMATS + ("MPO",)

DEFAULT_MAX_BYTES = 25 * 2**20
# Pixels actually decoded: 16 MP of PNG or WebP decode in under 1 s and take
# 64 MB as RGBA; JPEGs are decoded at reduced scale, so a 16x larger JPEG
# (up to Pillow's own bomb limit of 179 MP) still fits.
DEFAULT_MAX_PIXELS = 16_000_000
DEFAULT_MAX_SIDE = 1024  # detectors and the 128x96 canvas need no more
MIN_SIDE = 64
MAX_ASPECT = 6.0

ASK = "Upload a PNG, JPEG or WebP photo"

# EXIF orientation tag (0x0112) -> the transposition that makes the image
# upright (the same table as PIL.ImageOps.exif_transpose).
_EXIF_ORIENTATION = 0x0112
_UPRIGHT = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}

_SRGB = ImageCms.createProfile("sRGB")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

ImageSource = bytes | bytearray | memoryview | str | os.PathLike | Image.Image | np.ndarray


class ImageInputError(ValueError):
    """An upload that cannot be used; the message is meant for the end user."""


def load_image(
    source: ImageSource,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    min_side: int = MIN_SIDE,
    keep_alpha: bool = False,
) -> Image.Image:
    """Load an untrusted image upright as 8-bit RGB.

    Args:
        source: encoded bytes, a file path, a PIL image or a numpy array
            (H, W), (H, W, 1|3|4) of uint8, uint16, bool or float in [0, 1].
        max_bytes: largest accepted file size.
        max_pixels: largest number of pixels decoded, checked on the header
            (JPEGs count after decoding at 1/2 to 1/8 scale).
        max_side: the result's longer side is downscaled to this.
        min_side: smallest accepted width or height.
        keep_alpha: return RGBA when the image has real transparency; by
            default transparent pixels are composited onto the white background.

    Returns:
        A loaded PIL image in mode "RGB" (or "RGBA", see ``keep_alpha``).

    Raises:
        ImageInputError: the upload is empty, too large, not an image, damaged,
            too small or too elongated; the message says what to upload instead.
    """
    if isinstance(source, np.ndarray):
        image = _from_array(source)
    else:
        image = source if isinstance(source, Image.Image) else _open(_read(source, max_bytes))
        if image.format is not None and image.format not in _DECODED_FORMATS:
            raise ImageInputError(f"{image.format} images are not supported. {ASK}.")
    width, height = image.size
    _check_shape(width, height, min_side)
    try:
        if image.format in ("JPEG", "MPO"):
            # Decode at 1/2, 1/4 or 1/8 scale when that still covers max_side:
            # a 48 MP JPEG then costs what a 3 MP one does.
            image.draft(None, (max_side, max_side))
        if image.width * image.height > max_pixels:
            raise ImageInputError(
                f"the image is {width}x{height} px ({width * height / 1e6:.0f} MP), too large to "
                f"decode (limit {max_pixels / 1e6:.0f} MP after JPEG downscaling). Downscale it; "
                "about 2000 px on the long side is plenty."
            )
        image.load()
        orientation = _orientation(image) if image.format else 1
        image = _to_rgb_or_rgba(image)
    except ImageInputError:
        raise
    except Exception as err:  # a hostile file may make any decoder raise anything
        raise ImageInputError(
            f"the image file is damaged or incomplete ({type(err).__name__}: {err}). "
            f"Re-export it or {ASK[0].lower()}{ASK[1:]}."
        ) from err
    for step in _UPRIGHT.get(orientation, ()):
        image = image.transpose(step)
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if image.mode == "RGBA" and not keep_alpha:
        image = flatten_alpha(image)
    return image


def flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite an RGBA image onto the white background: RGB of the same size."""
    background = Image.new("RGB", image.size, BACKGROUND_RGB)
    background.paste(image, mask=image.getchannel("A"))
    return background


def _read(source: bytes | bytearray | memoryview | str | os.PathLike, max_bytes: int) -> bytes:
    """The upload's bytes, refusing empty and oversized files."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            found = path.is_file()
        except (OSError, ValueError):  # a name with a NUL byte, too long, ...
            found = False
        if not found:
            raise ImageInputError(f"no image file at '{path.name[:80]}'. {ASK}.")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageInputError(_too_many_bytes(size, max_bytes))
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    else:
        raise ImageInputError(
            f"cannot read an image from a {type(source).__name__}; pass bytes, a path, a PIL image or a numpy array"
        )
    if len(data) == 0:
        raise ImageInputError(f"the file is empty (0 bytes). {ASK}.")
    if len(data) > max_bytes:
        raise ImageInputError(_too_many_bytes(len(data), max_bytes))
    return data


def _too_many_bytes(size: int, max_bytes: int) -> str:
    return (
        f"the file is {_human(size)}; the limit is {_human(max_bytes)}. "
        "Upload a smaller JPEG (a photo of about 2000 px is plenty)."
    )


def _human(n_bytes: int) -> str:
    if n_bytes < 2**20:
        return f"{n_bytes} bytes"
    return f"{n_bytes / 2**20:.1f} MB"


def _sniff_unsupported(data: bytes) -> str | None:
    """Name of a known non-raster or unsupported format, from the first bytes."""
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    lower = head.lower()
    if lower.startswith(b"<"):
        kind = "SVG" if b"<svg" in data[:4096].lower() else "HTML or XML"
        return f"this is a {kind} text file renamed as an image, not a photo"
    if head.startswith(b"%PDF"):
        return "this is a PDF document, not a photo"
    if head.startswith(b"%!PS") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "PostScript/EPS files are not supported"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
        return "HEIC photos are not supported (export as JPEG from the phone's share menu)"
    return None


def _open(data: bytes) -> Image.Image:
    """Parse the header with the whitelisted decoders only (pixels stay undecoded)."""
    unsupported = _sniff_unsupported(data)
    if unsupported:
        raise ImageInputError(f"{unsupported}. {ASK}.")
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError as err:
        raise ImageInputError(f"the file is not a recognised image. {ASK}.") from err
    except Image.DecompressionBombError as err:
        raise ImageInputError(
            "the image declares hundreds of megapixels (a decompression bomb?). Upload a photo "
            "of at most a few thousand pixels per side."
        ) from err
    except Exception as err:
        raise ImageInputError(f"the image header is damaged ({type(err).__name__}). {ASK}.") from err


def _check_shape(width: int, height: int, min_side: int) -> None:
    if min(width, height) < min_side:
        raise ImageInputError(
            f"the image is {width}x{height} px; need at least {min_side}x{min_side}. Upload a larger photo."
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageInputError(
            f"the image is {width}x{height} px, more than {MAX_ASPECT:.0f} times longer than "
            "wide; crop it to a portrait or square photo."
        )


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8; 1 when missing or unreadable (a broken EXIF block is ignored)."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF must not reject an otherwise fine photo
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    """Convert any decoded mode to 8-bit sRGB "RGB", or "RGBA" when it has transparency."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image))).convert("RGB")
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "CMYK", "L"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: fall back to the plain conversion below
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    try:
        converted = image.convert("RGBA" if has_alpha else "RGB")
    except ValueError as err:
        raise ImageInputError(
            f"colour mode {image.mode} is not supported. Save the image as an sRGB PNG or JPEG."
        ) from err
    if has_alpha and converted.getchannel("A").getextrema()[0] == 255:
        converted = converted.convert("RGB")  # declared transparency, none used
    return converted


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Map 16-bit, 32-bit integer or float grey levels to uint8 (H, W)."""
    if not np.isfinite(values).all():
        raise ImageInputError(f"the image holds NaN or infinite values. {ASK}.")
    is_float = values.dtype.kind == "f"
    values = values.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if is_float and lo >= 0.0 and hi <= 1.0:
        scaled = values * 255.0  # float images in [0, 1]
    elif lo >= 0.0 and hi <= 65535.0:
        scaled = values / 257.0  # 16-bit range (65535 / 257 = 255)
    else:
        scaled = (values - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray) -> Image.Image:
    """A PIL image from an (H, W) or (H, W, C) array (C in 1, 3, 4)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageInputError(f"image array shape is {array.shape}; need (H, W), (H, W, 3) or (H, W, 4)")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        if array.dtype.kind not in "uif":
            raise ImageInputError(f"image array dtype is {array.dtype}; need uint8")
        if array.dtype.kind == "f" and np.isfinite(array).all() and (array.min() < 0 or array.max() > 1):
            raise ImageInputError(
                f"float image values span [{array.min():.3g}, {array.max():.3g}]; scale them to [0, 1] or pass uint8"
            )
        flat = array.reshape(array.shape[0], -1)
        array = _to_uint8(flat).reshape(array.shape)
    return Image.fromarray(np.ascontiguousarray(array))  # (H, W) -> L, C=3 -> RGB, C=4 -> RGBA
