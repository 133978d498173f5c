"""Hostile uploads built in memory: the files users (or attackers) hand the app.

Each builder returns the encoded bytes of one kind of bad or awkward upload.
``load_cases()`` lists them with what :func:`omfa.imaging.load_image` must do:
``"error"`` (an ImageInputError with a clear message) or ``"image"`` (a
correct upright RGB image). ``truncations`` and ``byte_flips`` multiply any
file into many damaged variants, for which either outcome is fine as long as
it is quick and is never a crash of another kind.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from skimage import data as skdata

# Colours of the four quadrants of the upright test pattern (top-left,
# top-right, bottom-left, bottom-right).
QUADRANT_RGB = ((220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 30))
PATTERN_HW = (128, 96)


@dataclass(frozen=True)
class Upload:
    """One test upload: its bytes, the file name a browser would send, the
    expected outcome of loading it ("error" or "image") and why."""

    name: str
    data: bytes
    filename: str
    expect: str
    why: str


def encode(image: np.ndarray | Image.Image, fmt: str, **params) -> bytes:
    """Encode an image with Pillow (fmt: "PNG", "JPEG", ...)."""
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buf = io.BytesIO()
    pil.save(buf, fmt, **params)
    return buf.getvalue()


def upright_pattern() -> np.ndarray:
    """(128, 96, 3) uint8, four coloured quadrants: tells every flip and rotation apart."""
    h, w = PATTERN_HW
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = QUADRANT_RGB[0]
    img[: h // 2, w // 2 :] = QUADRANT_RGB[1]
    img[h // 2 :, : w // 2] = QUADRANT_RGB[2]
    img[h // 2 :, w // 2 :] = QUADRANT_RGB[3]
    return img


def quadrant_colours(image: np.ndarray) -> np.ndarray:
    """Mean colour of each quadrant of (H, W, 3), sampled away from the edges: (4, 3)."""
    h, w = image.shape[:2]
    ys, xs = (h // 8, h // 4 + h // 8), (w // 8, w // 4 + w // 8)
    out = []
    for top in (ys[0], h // 2 + ys[0]):
        for left in (xs[0], w // 2 + xs[0]):
            out.append(image[top : top + h // 4, left : left + w // 4].reshape(-1, 3).mean(axis=0))
    return np.array(out)


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixel array a camera stores with EXIF ``orientation`` so that a
    viewer applying the tag shows ``upright`` (EXIF 2.3, tag 0x0112:
    where stored row 0 and column 0 lie in the upright view)."""
    u = upright
    stored = {
        1: u,
        2: u[:, ::-1],  # row 0 top, column 0 right
        3: u[::-1, ::-1],  # row 0 bottom, column 0 right
        4: u[::-1, :],  # row 0 bottom, column 0 left
        5: u.transpose(1, 0, 2),  # row 0 left, column 0 top
        6: np.rot90(u, 1),  # row 0 right, column 0 top
        7: u[::-1, ::-1].transpose(1, 0, 2),  # row 0 right, column 0 bottom
        8: np.rot90(u, -1),  # row 0 left, column 0 bottom
    }[orientation]
    return np.ascontiguousarray(stored)


def exif_jpeg(orientation: int) -> bytes:
    """JPEG of the rotated pattern tagged with EXIF ``orientation`` (1-8)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = stored_for_orientation(upright_pattern(), orientation)
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows) -> bytes:
    """A PNG written by hand, so headers and pixel data can be anything.

    ``rows`` yields the filtered scanlines (filter byte + packed pixels)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for row in rows) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@lru_cache(maxsize=4)
def png_bomb(side: int = 20000, rows: int | None = None) -> bytes:
    """A side x side 1-bit PNG of zeros: a few hundred kB that decode to side^2
    pixels. ``rows`` limits the scanlines actually stored (the header alone
    makes the bomb; storing all 10^5 rows of a 10^5 side costs seconds)."""
    row = b"\x00" * (1 + (side + 7) // 8)
    return raw_png(side, side, 1, 0, (row for _ in range(side if rows is None else rows)))


def png16_rgb() -> bytes:
    """A 48-bit RGB PNG (16 bits per channel) of the upright pattern."""
    pattern = upright_pattern().astype(">u2") * 257  # 8-bit to the full 16-bit range
    rows = (b"\x00" + pattern[y].tobytes() for y in range(pattern.shape[0]))
    return raw_png(pattern.shape[1], pattern.shape[0], 16, 2, rows)


def png16_gray() -> bytes:
    """A 16-bit greyscale PNG: a horizontal ramp from 0 to 65535 over 256 columns."""
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(">u2"), (96, 1))
    return raw_png(256, 96, 16, 0, (b"\x00" + ramp[y].tobytes() for y in range(96)))


def huge_header_jpeg(width: int = 60000, height: int = 60000) -> bytes:
    """A small real JPEG whose frame header claims width x height pixels."""
    data = bytearray(encode(upright_pattern(), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def huge_screen_gif() -> bytes:
    """A 1x1 GIF frame on a declared 65535x65535 logical screen."""
    data = bytearray(encode(np.zeros((1, 1, 3), np.uint8), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def palette_with_transparency() -> bytes:
    """A palette PNG whose index 0 is transparent: the left half, which must come out white."""
    pal = np.ones(PATTERN_HW, np.uint8)
    pal[:, : PATTERN_HW[1] // 2] = 0
    img = Image.fromarray(pal, mode="P")
    img.putpalette([0, 0, 0, 200, 20, 20] + [0] * 762)
    return encode(img, "PNG", transparency=0)


def animated_gif() -> bytes:
    """Three frames, red then green then blue; the first frame is the image."""
    frames = [Image.new("RGB", (96, 128), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def corrupt_png_crc() -> bytes:
    """A PNG with one flipped byte inside its pixel data."""
    data = bytearray(encode(upright_pattern(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 20] ^= 0xFF
    return bytes(data)


def bad_exif_jpeg() -> bytes:
    """A fine JPEG whose APP1 Exif block is garbage: the photo must still load."""
    data = encode(upright_pattern(), "JPEG")
    junk = b"Exif\x00\x00MM\x00*" + bytes(range(256)) * 2
    app1 = b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk
    return data[:2] + app1 + data[2:]


def truncations(data: bytes, count: int) -> list[bytes]:
    """``count`` prefixes of ``data`` cut at evenly spaced lengths (never whole)."""
    cuts = np.linspace(1, len(data) - 1, count).astype(int)
    return [data[:c] for c in cuts]


def byte_flips(data: bytes, count: int, rng: np.random.Generator) -> list[bytes]:
    """``count`` copies of ``data``, each with 1 to 8 random bytes overwritten."""
    out = []
    for _ in range(count):
        damaged = bytearray(data)
        for pos in rng.integers(0, len(data), rng.integers(1, 9)):
            damaged[pos] = int(rng.integers(0, 256))
        out.append(bytes(damaged))
    return out


def photo_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    return encode(image, "JPEG", quality=quality)


def non_person_photo() -> bytes:
    """A real photo without any person (scikit-image's cat, 451x300)."""
    return photo_jpeg(skdata.chelsea())


def no_garment_photo() -> bytes:
    """An evenly lit empty backdrop: nothing to cut out."""
    ramp = np.linspace(235, 250, 300)[:, None, None] * np.ones((300, 240, 3))
    return photo_jpeg(ramp.astype(np.uint8))


@lru_cache(maxsize=1)
def load_cases() -> tuple[Upload, ...]:
    """Representative hostile and awkward uploads with the expected load outcome."""
    rng = np.random.default_rng(0)
    pattern = upright_pattern()
    photo = photo_jpeg(skdata.astronaut())
    rgba = np.dstack([pattern, np.full(PATTERN_HW, 255, np.uint8)])
    rgba[:, : PATTERN_HW[1] // 2, 3] = 0
    big = np.asarray(Image.fromarray(skdata.astronaut()).resize((6000, 4000)))
    e, ok = "error", "image"
    cases = [
        Upload("zero_bytes", b"", "empty.png", e, "empty file"),
        Upload("random_bytes", rng.bytes(4096), "noise.png", e, "not an image"),
        Upload("png_signature_only", b"\x89PNG\r\n\x1a\n", "sig.png", e, "header without chunks"),
        Upload("truncated_png", encode(pattern, "PNG")[:300], "cut.png", e, "cut mid-IDAT"),
        Upload("truncated_jpeg", photo[: len(photo) // 2], "cut.jpg", e, "cut mid-scan"),
        Upload("corrupt_png_crc", corrupt_png_crc(), "crc.png", e, "damaged pixel data"),
        Upload("one_by_one", encode(np.zeros((1, 1, 3), np.uint8), "PNG"), "dot.png", e, "1x1"),
        Upload("thin_strip", encode(np.zeros((40, 4000, 3), np.uint8), "PNG"), "strip.png", e, "40 px high"),
        Upload("extreme_aspect", encode(np.zeros((4000, 100, 3), np.uint8), "PNG"), "tall.png", e, "40:1"),
        Upload("png_bomb_9000", png_bomb(9000), "bomb9.png", e, "81 MP, under Pillow's limit"),
        Upload("png_bomb_20000", png_bomb(20000), "bomb.png", e, "400 MP in a small file"),
        Upload("png_bomb_100000", png_bomb(100000, rows=64), "bomb2.png", e, "10 GP, Pillow's own limit"),
        Upload("huge_header_jpeg", huge_header_jpeg(), "huge.jpg", e, "header claims 3.6 GP"),
        Upload("huge_screen_gif", huge_screen_gif(), "screen.gif", e, "65535^2 logical screen"),
        Upload(
            "svg_as_png",
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
            b'width="10" height="10"><rect width="10" height="10"/></svg>',
            "v.png",
            e,
            "SVG",
        ),
        Upload(
            "html_as_png",
            b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
            "page.png",
            e,
            "HTML",
        ),
        Upload("pdf_as_jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "doc.jpg", e, "PDF"),
        Upload(
            "eps_as_png",
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
            "art.png",
            e,
            "EPS would run Ghostscript",
        ),
        Upload(
            "heic_as_jpg", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "phone.jpg", e, "HEIC"
        ),
        Upload("ico", encode(pattern, "ICO"), "icon.png", e, "not a whitelisted format"),
        Upload("oversized_file", b"\xff\xd8\xff\xe0" + rng.bytes(26 * 2**20), "big.jpg", e, "26 MB"),
        Upload(
            "cmyk_jpeg", encode(Image.fromarray(pattern).convert("CMYK"), "JPEG", quality=95), "cmyk.jpg", ok, "CMYK"
        ),
        Upload("png16_gray", png16_gray(), "deep.png", ok, "16-bit greyscale"),
        Upload("png16_rgb", png16_rgb(), "deep_rgb.png", ok, "48-bit RGB"),
        Upload("palette_transparency", palette_with_transparency(), "pal.png", ok, "P + tRNS"),
        Upload("rgba_half_transparent", encode(rgba, "PNG"), "rgba.png", ok, "alpha"),
        Upload("animated_gif", animated_gif(), "anim.gif", ok, "three frames"),
        Upload("bad_exif_jpeg", bad_exif_jpeg(), "exif.jpg", ok, "garbage EXIF"),
        Upload("jpeg_named_png", encode(pattern, "JPEG", quality=95), "photo.png", ok, "lying name"),
        Upload("grayscale_jpeg", encode(pattern[..., 1], "JPEG"), "grey.jpg", ok, "L mode"),
        Upload("bilevel_png", encode(Image.fromarray(pattern[..., 0] > 128), "PNG"), "bw.png", ok, "1-bit"),
        Upload("bmp", encode(pattern, "BMP"), "p.bmp", ok, "BMP"),
        Upload("tiff", encode(pattern, "TIFF"), "p.tif", ok, "TIFF"),
        Upload("webp", encode(pattern, "WEBP", lossless=True), "p.webp", ok, "WebP"),
        Upload("large_jpeg_24mp", photo_jpeg(big, quality=85), "large.jpg", ok, "6000x4000"),
        Upload("non_person_photo", non_person_photo(), "cat.jpg", ok, "loads; no person"),
    ]
    cases += [Upload(f"exif_orientation_{o}", exif_jpeg(o), f"exif{o}.jpg", ok, f"EXIF {o}") for o in range(1, 9)]
    return tuple(cases)
