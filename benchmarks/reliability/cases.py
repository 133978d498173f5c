"""The hostile uploads sent through the app's API: more than 200, built on `benchmarks.reliability.hostile`.

`benchmarks/reliability/hostile.py` holds the representative bad files (empty, truncated,
bombs, renamed SVG and HTML, CMYK, 16-bit, palette with transparency,
animated GIF, EXIF orientations, a photo without a person) and the
generators of damaged copies. This module adds the variants a public server
meets (every truncation and byte damage of six formats, sizes at and past
each limit, more colour modes and animations, EXIF in PNG and WebP, text
and archives renamed as images, hostile file names) and aims each file at
one upload of one endpoint, so that every upload widget of the app is hit.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from PIL import Image, ImageCms
from skimage import data as skdata

from benchmarks.reliability.server import ROOT

# Upload widgets hit by the suite, as "endpoint.input"; see benchmarks.reliability.uploads.TARGETS.
TARGET_NAMES = (
    "try_on.portrait",
    "try_on.garment",
    "try_off.dressed",
    "outfit.bottom",
    "pose_gallery.portrait",
    "pose_from_photo.photo",
)


@dataclass(frozen=True)
class Case:
    """One hostile upload.

    expect: "error" (the app must answer with a clear error) or "any" (a clear
        error or a correct result: the file may be a valid image, and whether
        it shows a person or a garment depends on its content).
    target: which upload of which endpoint receives it (one of TARGET_NAMES).
    """

    name: str
    data: bytes
    filename: str
    expect: str
    target: str


def hostile() -> ModuleType:
    """The generators of hostile uploads (shared with the test suite)."""
    from benchmarks.reliability import hostile as module

    return module


def _encode(image: np.ndarray | Image.Image, fmt: str, **params) -> bytes:
    return hostile().encode(image, fmt, **params)


def _animation(fmt: str) -> bytes:
    """Three frames (red, green, blue) as an animated PNG, WebP or multi-page TIFF."""
    frames = [Image.new("RGB", (96, 128), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def _exif(image: np.ndarray, fmt: str, orientation: int, **params) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(image, fmt, exif=exif.tobytes(), **params)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("photo.png", _encode(hostile().upright_pattern(), "PNG"))
    return buf.getvalue()


def _variants(rng: np.random.Generator) -> list[tuple[str, bytes, str, str]]:
    """(name, bytes, file name, expect) of the uploads added to the representative set of
    benchmarks.reliability.hostile."""
    h = hostile()
    pattern = h.upright_pattern()
    photo = h.photo_jpeg(skdata.astronaut())
    grey = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (128, 1))
    sources = {
        "png": _encode(pattern, "PNG"),
        "jpeg": photo,
        "gif": h.animated_gif(),
        "webp": _encode(pattern, "WEBP", lossless=True),
        "png16": h.png16_rgb(),
        "bmp": _encode(pattern, "BMP"),
    }
    out: list[tuple[str, bytes, str, str]] = []
    for fmt, data in sources.items():
        out += [
            (f"truncated_{fmt}_{i}", cut, f"cut{i}.{fmt[:4]}", "any") for i, cut in enumerate(h.truncations(data, 12))
        ]
    for fmt in ("png", "jpeg", "gif", "webp", "bmp"):
        out += [
            (f"damaged_{fmt}_{i}", bad, f"bad{i}.{fmt[:4]}", "any")
            for i, bad in enumerate(h.byte_flips(sources[fmt], 10, rng))
        ]
    e, ok = "error", "any"
    black = lambda hw: np.zeros((*hw, 3), np.uint8)  # noqa: E731
    out += [
        ("jpeg_1x1", _encode(black((1, 1)), "JPEG"), "dot.jpg", e),
        ("gif_1x1", _encode(black((1, 1)), "GIF"), "dot.gif", e),
        ("png_2x2", _encode(black((2, 2)), "PNG"), "tiny.png", e),
        ("png_63x63", _encode(black((63, 63)), "PNG"), "small.png", e),
        ("png_64x64", _encode(black((64, 64)), "PNG"), "least.png", ok),
        ("aspect_6_to_1", _encode(black((384, 64)), "PNG"), "six.png", ok),
        ("aspect_past_6_to_1", _encode(black((385, 64)), "PNG"), "seven.png", e),
        ("strip_1x5000", _encode(black((1, 5000)), "PNG"), "row.png", e),
        ("strip_5000x1", _encode(black((5000, 1)), "PNG"), "column.png", e),
        ("jpeg_header_20000", h.huge_header_jpeg(20000, 20000), "huge20k.jpg", e),
        ("png_rgb_bomb_5000", h.raw_png(5000, 5000, 8, 2, (b"\x00" * 15001 for _ in range(5000))), "rgb5k.png", e),
        ("cmyk_jpeg_exif_6", _exif(Image.fromarray(pattern).convert("CMYK"), "JPEG", 6), "cmyk6.jpg", ok),
        ("cmyk_tiff", _encode(Image.fromarray(pattern).convert("CMYK"), "TIFF"), "cmyk.tif", ok),
        (
            "png16_rgba",
            h.raw_png(96, 128, 16, 6, (b"\x00" + np.full((96, 4), 40000, ">u2").tobytes() for _ in range(128))),
            "deep_rgba.png",
            ok,
        ),
        ("tiff_i16", _encode(Image.fromarray(grey.astype(np.uint16) * 257), "TIFF"), "deep.tif", ok),
        ("tiff_i32", _encode(Image.fromarray(grey.astype(np.int32) * 1000), "TIFF"), "int.tif", ok),
        ("tiff_float", _encode(Image.fromarray(grey.astype(np.float32) / 255), "TIFF"), "float.tif", ok),
        ("tiff_bilevel", _encode(Image.fromarray(grey > 128), "TIFF"), "bw.tif", ok),
        ("png_la", _encode(Image.fromarray(np.dstack([grey, grey]), "LA"), "PNG"), "la.png", ok),
        ("gif_transparent", _encode(Image.fromarray(pattern).convert("P"), "GIF", transparency=0), "t.gif", ok),
        (
            "png_icc_srgb",
            _encode(pattern, "PNG", icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()),
            "icc.png",
            ok,
        ),
        ("jpeg_broken_icc", _encode(pattern, "JPEG", icc_profile=b"not a profile" * 20), "icc.jpg", ok),
        ("apng", _animation("PNG"), "anim.png", ok),
        ("animated_webp", _animation("WEBP"), "anim.webp", ok),
        ("multipage_tiff", _animation("TIFF"), "pages.tif", ok),
    ]
    for orientation in range(1, 9):
        stored = h.stored_for_orientation(pattern, orientation)
        out.append((f"png_exif_{orientation}", _exif(stored, "PNG", orientation), f"exif{orientation}.png", ok))
        out.append(
            (
                f"webp_exif_{orientation}",
                _exif(stored, "WEBP", orientation, lossless=True),
                f"exif{orientation}.webp",
                ok,
            )
        )
    out += [(f"jpeg_exif_invalid_{o}", _exif(pattern, "JPEG", o), f"odd{o}.jpg", ok) for o in (0, 9, 65535)]
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="900" height="900"><circle r="400"/></svg>'
    html = b"<html><head><script>fetch('/etc/passwd')</script></head><body>photo</body></html>"
    out += [(f"svg_as_{x}", svg, f"vector.{x}", e) for x in ("jpg", "webp", "gif")]
    out += [(f"html_as_{x}", html, f"page.{x}", e) for x in ("jpg", "webp", "gif")]
    out += [
        ("svg_with_bom", b"\xef\xbb\xbf\n  " + svg, "bom.png", e),
        (
            "svg_doctype",
            b'<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x.dtd">' + svg,
            "doctype.png",
            e,
        ),
        ("gif_header_then_html", b"GIF89a" + html, "polyglot.gif", e),
        ("json_as_png", b'{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}', "data.png", e),
        ("text_as_jpg", b"just some text\n" * 20, "notes.jpg", e),
        ("script_as_png", b"#!/bin/sh\nrm -rf /\n", "run.png", e),
        ("zip_as_png", _zip(), "archive.png", e),
        ("tiff_header_only", b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 0), "head.tif", e),
    ]
    out += [(f"random_{n}_bytes", rng.bytes(n), f"noise{n}.png", e) for n in (1, 7, 64, 1024, 65536, 2**20)]
    return out


def _content_cases() -> list[Case]:
    """Valid images whose content does not fit the widget: they must get a clear error."""
    h = hostile()
    backdrop = h.no_garment_photo()
    white = _encode(np.full((300, 240, 3), 255, np.uint8), "PNG")
    return [
        Case("non_person_portrait_cat", h.non_person_photo(), "cat.jpg", "error", "try_on.portrait"),
        Case("non_person_portrait_coffee", h.photo_jpeg(skdata.coffee()), "coffee.jpg", "error", "try_on.portrait"),
        Case("non_person_gallery_portrait", h.non_person_photo(), "cat.jpg", "error", "pose_gallery.portrait"),
        Case("non_person_pose_photo", h.photo_jpeg(skdata.coffee()), "coffee.jpg", "error", "pose_from_photo.photo"),
        Case("garment_photo_without_garment", backdrop, "backdrop.jpg", "error", "try_on.garment"),
        Case("garment_photo_all_white", white, "white.png", "error", "try_on.garment"),
        Case("outfit_bottom_without_garment", backdrop, "backdrop.jpg", "error", "outfit.bottom"),
        Case("try_off_without_person", backdrop, "backdrop.jpg", "error", "try_off.dressed"),
    ]


def _name_cases() -> list[Case]:
    """A fine photo under awkward file names (what browsers send as the upload's name)."""
    photo = (ROOT / "assets" / "examples" / "portrait.png").read_bytes()
    names = ("no_extension", "x" * 200 + ".png", "фото 📷.png", 'it\'s "quoted" & spaced.png', "..png", "photo.exe")
    return [Case(f"file_name_{i}", photo, name, "any", "try_on.portrait") for i, name in enumerate(names)]


def upload_cases(quick: bool = False) -> list[Case]:
    """Every hostile upload (more than 200), each aimed at one upload widget; `quick`: a spread-out subset of ~35.

    Deterministic: the random bytes and damage come from a seeded generator.
    """
    rng = np.random.default_rng(0)
    loose = [(u.name, u.data, u.filename, "error" if u.expect == "error" else "any") for u in hostile().load_cases()]
    loose += _variants(rng)
    cases = [
        Case(name, data, filename, expect, TARGET_NAMES[i % len(TARGET_NAMES)])
        for i, (name, data, filename, expect) in enumerate(loose)
    ]
    cases += _content_cases() + _name_cases()
    if quick:
        must = {
            "zero_bytes",
            "png_bomb_20000",
            "svg_as_png",
            "html_as_png",
            "cmyk_jpeg",
            "png16_rgb",
            "palette_transparency",
            "animated_gif",
            "oversized_file",
            "random_bytes",
            "truncated_jpeg",
        }
        cases = [
            c
            for i, c in enumerate(cases)
            if c.name in must or c.name.startswith(("non_person", "garment_")) or i % 12 == 0
        ]
    return cases
