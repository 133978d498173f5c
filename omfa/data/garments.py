"""Garment specifications and their fabric textures.

A garment is a small frozen record (`GarmentSpec`): which slot it fills, its
cut (sleeve and hem lengths, neckline, waist, skirt flare) and its `Pattern`.
Lengths are fractions between body landmarks, not metres, so one spec fits
every body shape. `omfa.data.tailor` turns a spec into geometry on the rest
pose; this module only draws the fabric:

- `sample_garment(rng, slot, garment_id)` draws a random spec;
- `fabric_panel(...)` bakes a texture panel for one body region, the pattern
  evaluated in physical units with a whole number of repeats around the body
  so the seam at the back closes without a jump, and an optional print
  (logo or text) at a given spot.

Patterns are defined in "tile units": one unit is one repeat (`period_m`).
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

UPPER_STYLES: tuple[str, ...] = ("sleeveless", "short_sleeve", "long_sleeve")
LOWER_STYLES: tuple[str, ...] = ("trousers", "shorts", "skirt")
PATTERN_KINDS: tuple[str, ...] = ("solid", "stripes", "checks", "dots", "logo", "text")
NECKLINES: tuple[str, ...] = ("crew", "v", "scoop")
STRIPE_ORIENTATIONS: tuple[str, ...] = ("horizontal", "vertical", "diagonal")
LOGO_MOTIFS: tuple[str, ...] = ("circle", "star", "heart", "triangle", "diamond", "ring", "bolt")
PRINT_WORDS: tuple[str, ...] = ("OMFA", "LOVE", "NYC", "SURF", "ROCK", "GO", "YES", "ART", "23", "07", "WAVE", "JOY")

# Colours that clothes often have, besides the random hues.
NEUTRALS: tuple[tuple[int, int, int], ...] = (
    (245, 245, 240),
    (25, 25, 28),
    (120, 120, 125),
    (200, 200, 205),
    (30, 40, 85),
    (215, 195, 160),
    (110, 75, 45),
    (85, 95, 55),
    (140, 30, 45),
    (60, 90, 140),
)

TEXTURE_PX_PER_M = 200  # texel density of every panel: 5 mm per texel


class GarmentSpecError(ValueError):
    """A garment spec with an unknown style, pattern or out-of-range length."""


@dataclass(frozen=True)
class Pattern:
    """The fabric: colours and a repeating motif, or a print on a plain ground.

    kind: one of PATTERN_KINDS. base / accent: sRGB colours. period_m: one
    repeat in metres (stripes, checks, dots). width: the accent's share of a
    period (stripe or check band width, dot diameter), 0..1. orientation:
    stripes only. motif: the logo shape or the printed word.
    """

    kind: str
    base: tuple[int, int, int]
    accent: tuple[int, int, int] = (255, 255, 255)
    period_m: float = 0.1
    width: float = 0.5
    orientation: str = "horizontal"
    motif: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PATTERN_KINDS:
            raise GarmentSpecError(f"pattern kind {self.kind!r} is unknown; use one of {', '.join(PATTERN_KINDS)}")
        if self.orientation not in STRIPE_ORIENTATIONS:
            raise GarmentSpecError(f"stripe orientation {self.orientation!r} is unknown; use {STRIPE_ORIENTATIONS}")
        if not 0.02 <= self.period_m <= 1.0:
            raise GarmentSpecError(f"pattern period {self.period_m} m is out of range; use 0.02 to 1 m")
        object.__setattr__(self, "base", tuple(int(c) for c in self.base))
        object.__setattr__(self, "accent", tuple(int(c) for c in self.accent))


@dataclass(frozen=True)
class GarmentSpec:
    """One garment, defined once and cut from the rest-pose body by `omfa.data.tailor`.

    slot: "upper" or "lower". style: one of UPPER_STYLES / LOWER_STYLES.
    hem: upper: 0 (at the chest) .. 1 (at the crotch); lower: 0 (hip) .. 1
    (ankle) along the leg. sleeve: upper only, 0 (shoulder) .. 1 (wrist) along
    the arm, negative for an armhole cut into the shoulder. neckline: upper
    only. waist: lower only, 0 (hip joints) .. 1 (navel). flare: skirt hem
    radius over its top radius.
    """

    garment_id: str
    slot: str
    style: str
    pattern: Pattern
    hem: float
    sleeve: float = 0.0
    neckline: str = "crew"
    waist: float = 0.5
    flare: float = 1.0

    def __post_init__(self) -> None:
        styles = {"upper": UPPER_STYLES, "lower": LOWER_STYLES}.get(self.slot)
        if styles is None:
            raise GarmentSpecError(f"garment slot {self.slot!r} is unknown; use 'upper' or 'lower'")
        if self.style not in styles:
            raise GarmentSpecError(f"{self.slot} style {self.style!r} is unknown; use one of {', '.join(styles)}")
        if self.neckline not in NECKLINES:
            raise GarmentSpecError(f"neckline {self.neckline!r} is unknown; use one of {', '.join(NECKLINES)}")
        if not 0.0 <= self.hem <= 1.0 or not -0.2 <= self.sleeve <= 1.0 or not 0.0 <= self.waist <= 1.0:
            raise GarmentSpecError(
                f"garment {self.garment_id}: hem {self.hem}, sleeve {self.sleeve} or waist {self.waist} "
                "is out of range; hem and waist lie in 0..1, sleeve in -0.2..1"
            )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GarmentSpec:
        fields = dict(data)
        fields["pattern"] = Pattern(**data["pattern"])
        return cls(**fields)


@dataclass(frozen=True)
class Print:
    """Where a logo or text goes on a panel: centre (u, v) in 0..1 and width in metres."""

    u: float
    v: float
    width_m: float


# ----------------------------------------------------------------------------
# Sampling


def sample_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """A clothing colour: a neutral 30% of the time, else a random hue."""
    if rng.random() < 0.3:
        return NEUTRALS[int(rng.integers(len(NEUTRALS)))]
    h, s, v = rng.random(), rng.uniform(0.35, 0.95), rng.uniform(0.35, 0.95)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def contrasting_color(rng: np.random.Generator, base: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour far from `base` (Euclidean RGB distance >= 120), so motifs stay visible."""
    for _ in range(50):
        candidate = sample_color(rng)
        if np.linalg.norm(np.subtract(candidate, base, dtype=float)) >= 120:
            return candidate
    # A dark base gets white, a light one black.
    return (250, 250, 250) if sum(base) < 384 else (20, 20, 20)


def sample_pattern(rng: np.random.Generator, slot: str) -> Pattern:
    """A random pattern; prints (logo, text) only on tops, where a chest print belongs."""
    kinds = PATTERN_KINDS if slot == "upper" else PATTERN_KINDS[:4]
    weights = np.array([0.25, 0.25, 0.17, 0.13, 0.1, 0.1][: len(kinds)])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    base = sample_color(rng)
    accent = contrasting_color(rng, base)
    # Periods below 8 cm wash out at 128x96 (about 1.8 cm per pixel).
    period = float(rng.uniform(0.08, 0.16))
    width = {"stripes": rng.uniform(0.3, 0.6), "checks": rng.uniform(0.3, 0.55), "dots": rng.uniform(0.35, 0.6)}
    motif = ""
    if kind == "logo":
        motif = LOGO_MOTIFS[int(rng.integers(len(LOGO_MOTIFS)))]
    elif kind == "text":
        motif = PRINT_WORDS[int(rng.integers(len(PRINT_WORDS)))]
    return Pattern(
        kind=kind,
        base=base,
        accent=accent,
        period_m=round(period, 4),
        width=round(float(width.get(kind, 0.5)), 3),
        orientation=STRIPE_ORIENTATIONS[int(rng.choice(3, p=[0.45, 0.35, 0.2]))],
        motif=motif,
    )


def sample_garment(rng: np.random.Generator, slot: str, garment_id: str) -> GarmentSpec:
    """A random garment for `slot` ("upper" or "lower") with lengths per style."""
    pattern = sample_pattern(rng, slot)
    if slot == "upper":
        style = UPPER_STYLES[int(rng.choice(3, p=[0.25, 0.4, 0.35]))]
        sleeve = {
            "sleeveless": rng.uniform(-0.1, -0.03),
            "short_sleeve": rng.uniform(0.15, 0.4),
            "long_sleeve": rng.uniform(0.85, 0.97),
        }[style]
        # Length variants: cropped, regular, long (tunic).
        hem = [rng.uniform(0.2, 0.35), rng.uniform(0.5, 0.7), rng.uniform(0.8, 0.92)][
            int(rng.choice(3, p=[0.2, 0.55, 0.25]))
        ]
        neckline = NECKLINES[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        return GarmentSpec(
            garment_id,
            slot,
            style,
            pattern,
            hem=round(float(hem), 3),
            sleeve=round(float(sleeve), 3),
            neckline=neckline,
        )
    if slot == "lower":
        style = LOWER_STYLES[int(rng.choice(3, p=[0.45, 0.3, 0.25]))]
        hem = {"trousers": rng.uniform(0.86, 0.97), "shorts": rng.uniform(0.2, 0.45), "skirt": rng.uniform(0.3, 0.75)}[
            style
        ]
        flare = rng.uniform(1.0, 1.35) if style == "skirt" else 1.0
        return GarmentSpec(
            garment_id,
            slot,
            style,
            pattern,
            hem=round(float(hem), 3),
            waist=round(float(rng.uniform(0.3, 0.9)), 3),
            flare=round(float(flare), 3),
        )
    raise GarmentSpecError(f"garment slot {slot!r} is unknown; use 'upper' or 'lower'")


# ----------------------------------------------------------------------------
# Textures


def pattern_field(pattern: Pattern, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Accent share (0..1) at tile coordinates a (around the body) and b (along it).

    Integer steps of a or b give the same value, so a panel with a whole
    number of repeats is periodic around the body.
    """
    a, b = np.broadcast_arrays(a, b)
    fa, fb = a - np.floor(a), b - np.floor(b)
    w = pattern.width
    if pattern.kind == "stripes":
        coordinate = {"horizontal": fb, "vertical": fa, "diagonal": (a + b) - np.floor(a + b)}[pattern.orientation]
        return (coordinate < w).astype(np.float64)
    if pattern.kind == "checks":
        # Gingham: a band in one direction is half accent, crossings are full accent.
        return 0.5 * (fa < w) + 0.5 * (fb < w)
    if pattern.kind == "dots":
        return (np.hypot(fa - 0.5, fb - 0.5) < w / 2).astype(np.float64)
    return np.zeros(a.shape)


def fabric_panel_width(circumference_m: float, px_per_m: int = TEXTURE_PX_PER_M) -> int:
    """Texels around a region: a multiple of 4 (OpenGL reads RGB rows 4-byte aligned)."""
    return max(8, 4 * int(round(circumference_m * px_per_m / 4)))


def fabric_panel(
    pattern: Pattern,
    circumference_m: float,
    length_m: float,
    prints: tuple[Print, ...] = (),
    px_per_m: int = TEXTURE_PX_PER_M,
    width_px: int | None = None,
) -> np.ndarray:
    """Bake the fabric of one body region into an sRGB texture, uint8 (H, W, 3).

    Columns go once around the region (u = 0..1, seam at the back), rows along
    it (v = 0 at the top). The repeat around is stretched slightly so a whole
    number of periods fits; prints are drawn over the pattern at their spot.
    `width_px` overrides the width (panels packed together share one width);
    the height follows so texels stay square.
    """
    width = fabric_panel_width(circumference_m, px_per_m) if width_px is None else int(width_px)
    if width % 4:
        raise GarmentSpecError(f"panel width {width} px is not a multiple of 4; OpenGL reads RGB rows 4-byte aligned")
    # Square texels: a wider panel gets more rows too (mipmapping stays isotropic).
    height = max(8, int(round(length_m * width / circumference_m)))
    repeats = max(1, int(round(circumference_m / pattern.period_m)))
    # 2x2 supersampling, then a box filter: smooth motif edges without blur.
    ss = 2
    u = (np.arange(width * ss) + 0.5) / (width * ss)
    v = (np.arange(height * ss) + 0.5) / (height * ss)
    a = u[None, :] * repeats
    b = v[:, None] * length_m / pattern.period_m
    share = pattern_field(pattern, a, b)
    share = share.reshape(height, ss, width, ss).mean(axis=(1, 3))
    for spot in prints:
        share = np.maximum(share, _print_mask(pattern, spot, circumference_m, length_m, (height, width)))
    base = np.asarray(pattern.base, dtype=np.float64)
    accent = np.asarray(pattern.accent, dtype=np.float64)
    image = base + share[..., None] * (accent - base)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _print_mask(
    pattern: Pattern, spot: Print, circumference_m: float, length_m: float, hw: tuple[int, int]
) -> np.ndarray:
    """(H, W) float coverage of a logo or word centred at the spot, drawn at 4x and reduced."""
    height, width = hw
    if pattern.kind not in ("logo", "text") or not pattern.motif:
        return np.zeros(hw)
    scale = 4
    canvas = Image.new("L", (width * scale, height * scale), 0)
    draw = ImageDraw.Draw(canvas)
    # Print size in canvas pixels (the panel maps metres linearly in both directions).
    w_px = spot.width_m / circumference_m * width * scale
    h_px = w_px * (height / length_m) / (width / circumference_m)
    cx, cy = spot.u * width * scale, spot.v * height * scale
    if pattern.kind == "text":
        _draw_word(canvas, pattern.motif, (cx, cy), w_px)
    else:
        _draw_motif(draw, pattern.motif, (cx, cy), w_px / 2, h_px / 2)
    reduced = canvas.resize((width, height), Image.Resampling.BOX)
    return np.asarray(reduced, dtype=np.float64) / 255.0


def _draw_word(canvas: Image.Image, word: str, center: tuple[float, float], width_px: float) -> None:
    """Bold block letters filling `width_px`, centred."""
    size = 10
    font = ImageFont.load_default(size=size * 4)
    box = font.getbbox(word, stroke_width=2)
    glyphs = Image.new("L", (box[2] - box[0] + 4, box[3] - box[1] + 4), 0)
    ImageDraw.Draw(glyphs).text((2 - box[0], 2 - box[1]), word, fill=255, font=font, stroke_width=2, stroke_fill=255)
    factor = width_px / glyphs.width
    glyphs = glyphs.resize(
        (max(1, int(glyphs.width * factor)), max(1, int(glyphs.height * factor))), Image.Resampling.LANCZOS
    )
    canvas.paste(255, (int(center[0] - glyphs.width / 2), int(center[1] - glyphs.height / 2)), glyphs)


def _draw_motif(draw: ImageDraw.ImageDraw, motif: str, center: tuple[float, float], rx: float, ry: float) -> None:
    """A filled emblem of half-size (rx, ry) pixels."""
    cx, cy = center
    if motif in ("circle", "ring"):
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        if motif == "ring":
            draw.ellipse((cx - rx * 0.55, cy - ry * 0.55, cx + rx * 0.55, cy + ry * 0.55), fill=0)
        return
    unit = {
        "star": [
            (np.sin(t) * r, -np.cos(t) * r) for t, r in zip(np.arange(10) * np.pi / 5, [1, 0.45] * 5, strict=True)
        ],
        "triangle": [(0, -1), (1, 0.85), (-1, 0.85)],
        "diamond": [(0, -1), (0.75, 0), (0, 1), (-0.75, 0)],
        "bolt": [(0.2, -1), (-0.6, 0.15), (0.0, 0.15), (-0.25, 1), (0.6, -0.2), (0.05, -0.2), (0.4, -1)],
        "heart": [
            (np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)) / 16)
            for t in np.linspace(0, 2 * np.pi, 40, endpoint=False)
        ],
    }[motif]
    draw.polygon([(cx + x * rx, cy + y * ry) for x, y in unit], fill=255)
