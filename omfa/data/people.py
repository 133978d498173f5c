"""Identities of the fitting room: skin tone, hair, shoes and body shape.

The mannequin has no face, so a person is recognised by what the model can
see at 128x96: skin tone, hair colour, the hair's shape (a painted cap plus a
solid for bobs, long hair, buns and afros), shoes and height and proportions
(the mannequin's shape only changes bone lengths). `identity_layers` builds
the hair and shoe geometry of one identity on the rest body.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import trimesh

from omfa.data.tailor import FRAMES, Layer, Tailor

# Skin tones from light to deep (sRGB), jittered per identity.
SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (250, 220, 196),
    (238, 196, 168),
    (225, 178, 140),
    (205, 150, 110),
    (176, 120, 84),
    (140, 92, 62),
    (104, 66, 44),
    (74, 48, 34),
)
HAIR_COLORS: tuple[tuple[int, int, int], ...] = (
    (22, 18, 18),
    (48, 32, 24),
    (88, 58, 36),
    (122, 52, 28),
    (196, 160, 96),
    (226, 214, 186),
    (140, 140, 140),
    (168, 58, 30),
)
HAIR_STYLES: tuple[str, ...] = ("bald", "crop", "short", "bob", "long", "bun", "afro")
SHOE_STYLES: tuple[str, ...] = ("none", "low", "boots")
SHOE_COLORS: tuple[tuple[int, int, int], ...] = (
    (20, 20, 20),
    (240, 240, 240),
    (100, 60, 35),
    (190, 150, 100),
    (160, 30, 30),
    (40, 60, 120),
)

# Hairline heights (head radii above the head centre) at the forehead and the nape.
_HAIRLINE = {
    "crop": (0.55, 0.0),
    "short": (0.45, -0.35),
    "bob": (0.4, -0.6),
    "long": (0.4, -0.7),
    "bun": (0.4, -0.45),
    "afro": (0.45, -0.3),
}
# Hair solids: ellipsoids (centre, radii) in head radii around the head centre.
_HAIR_SOLIDS = {
    "bob": ((0.0, 0.12, -0.22), (1.12, 1.0, 1.02)),
    "long": ((0.0, -0.95, -0.62), (0.92, 1.7, 0.42)),
    "bun": ((0.0, 0.72, -0.72), (0.4, 0.4, 0.4)),
    "afro": ((0.0, 0.32, -0.3), (1.38, 1.1, 1.15)),
}


class IdentityError(ValueError):
    """An identity with an unknown hair or shoe style."""


@dataclass(frozen=True)
class Identity:
    """One person of the fitting room.

    shape: the 10 SMPL-X shape coefficients (only the first two change the
    mannequin visibly: height and proportions). Colours are sRGB.
    """

    identity_id: str
    skin: tuple[int, int, int]
    hair_color: tuple[int, int, int]
    hair_style: str
    shoes: str
    shoe_color: tuple[int, int, int]
    shoe_height_m: float
    shape: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.hair_style not in HAIR_STYLES:
            raise IdentityError(f"hair style {self.hair_style!r} is unknown; use one of {', '.join(HAIR_STYLES)}")
        if self.shoes not in SHOE_STYLES:
            raise IdentityError(f"shoe style {self.shoes!r} is unknown; use one of {', '.join(SHOE_STYLES)}")
        for name in ("skin", "hair_color", "shoe_color"):
            object.__setattr__(self, name, tuple(int(c) for c in getattr(self, name)))
        object.__setattr__(self, "shape", tuple(float(c) for c in self.shape))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Identity:
        return cls(**data)


def sample_identity(rng: np.random.Generator, identity_id: str) -> Identity:
    """A random person: any skin tone, hair style and colour, shoes, height 1.6 to 1.85 m."""
    tone = np.asarray(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], dtype=float)
    skin = np.clip(tone * rng.uniform(0.94, 1.05) + rng.normal(0, 4, 3), 0, 255)
    if rng.random() < 0.1:  # dyed hair
        hair = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9))) * 255
    else:
        hair = np.asarray(HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))], dtype=float) * rng.uniform(0.9, 1.1)
    style = HAIR_STYLES[int(rng.choice(len(HAIR_STYLES), p=[0.06, 0.16, 0.2, 0.16, 0.2, 0.12, 0.1]))]
    shoes = SHOE_STYLES[int(rng.choice(3, p=[0.15, 0.6, 0.25]))]
    shoe_height = rng.uniform(0.03, 0.06) if shoes == "low" else rng.uniform(0.16, 0.3)
    shape = np.zeros(10)
    shape[0] = rng.uniform(-1.2, 1.2)  # height
    shape[1] = rng.uniform(-1.0, 1.0)  # proportions
    return Identity(
        identity_id=identity_id,
        skin=tuple(np.round(skin).astype(int)),
        hair_color=tuple(np.round(np.clip(hair, 0, 255)).astype(int)),
        hair_style=style,
        shoes=shoes,
        shoe_color=SHOE_COLORS[int(rng.integers(len(SHOE_COLORS)))],
        shoe_height_m=round(float(shoe_height), 3),
        shape=tuple(np.round(shape, 3)),
    )


@dataclass(frozen=True)
class IdentityLayers:
    """Geometry of one identity: hair layers, shoe layer and the body faces they hide."""

    hair: tuple[Layer, ...]
    shoes: Layer | None
    covers: np.ndarray  # (F,) bool


def identity_layers(tailor: Tailor, identity: Identity) -> IdentityLayers:
    """Cut the hair cap and shoes from the rest body and build the hair solid."""
    covers = np.zeros(len(tailor.faces), dtype=bool)
    hair: list[Layer] = []
    if identity.hair_style != "bald":
        front, back = _HAIRLINE[identity.hair_style]
        cap = tailor.hair_field(front, back)
        hair.append(tailor.painted(cap, textured=False))
        covers |= np.all(cap[tailor.faces] > 0, axis=1)
        if identity.hair_style in _HAIR_SOLIDS:
            hair.append(_ellipsoid(tailor, *_HAIR_SOLIDS[identity.hair_style]))
    shoes = None
    if identity.shoes != "none":
        field = tailor.shoe_field(identity.shoe_height_m)
        shoes = tailor.painted(field, textured=False)
        covers |= np.all(field[tailor.faces] > 0, axis=1)
    return IdentityLayers(tuple(hair), shoes, covers)


def _ellipsoid(tailor: Tailor, center: tuple[float, ...], radii: tuple[float, ...]) -> Layer:
    """A closed ellipsoid in head coordinates, moving rigidly with the head."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    scale = tailor.head_radius
    points = tailor.head_center + (np.asarray(sphere.vertices) * radii + center) * scale
    faces = np.asarray(sphere.faces, dtype=np.int64)
    weights = np.zeros((len(points), len(FRAMES)))
    weights[:, FRAMES.index("head")] = 1.0
    return Layer(
        faces=faces,
        uv=np.zeros((len(points), 2), np.float32),
        panel=np.zeros(len(faces), dtype=np.int64),
        solid_rest=points,
        solid_weights=weights,
    )
