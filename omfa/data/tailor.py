"""Garments on the body: cut from the rest pose, textured, and dressed on any pose.

Every garment is defined once on the rest-pose (T-pose) mannequin:

- a signed *field* on the rest vertices is positive where the garment is
  (tops: below the neckline, above the hem, inside the sleeve; bottoms:
  between waist and hem), and `omfa.data.cutting.cut` splits the triangles
  exactly along its zero line;
- texture coordinates come from rest-pose cylinders per region (trunk, each
  arm, each leg): u goes once around (seam at the back, or under the arm),
  v along the region, so the pattern is glued to the body and follows it in
  every pose;
- a skirt also gets a solid: an open cone from the hips to the hem, skinned
  to the pelvis and thighs.

`Tailor` holds the rest body and turns a `GarmentSpec` into a `Cloth` (pieces
with UVs plus their textures). `dress` places a cloth on a posed body:
positions are blends of posed vertices, nudged outward along the normals so
each layer sits on top of the one below (skin < shoes < bottom < top).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omfa.data.cutting import Piece, covered_faces, cut, unweld
from omfa.data.cylinders import Cylinder, limb_cylinder, trunk_cylinder
from omfa.data.garments import GarmentSpec, Print, fabric_panel, fabric_panel_width
from omfa.pose.body import JOINT_NAMES, PART_NAMES, Body, PosedMesh
from omfa.pose.lowpoly import LowPolyBody

# Regions with their own texture cylinder. Hands map to the arm cylinder and
# feet to the leg cylinder (sleeves and trousers end before them).
REGIONS: tuple[str, ...] = ("trunk", "arm_l", "arm_r", "leg_l", "leg_r", "head")
_PART_REGION = {
    "head": "head",
    "neck": "head",
    "torso": "trunk",
    "left_upper_arm": "arm_l",
    "left_forearm": "arm_l",
    "left_hand": "arm_l",
    "right_upper_arm": "arm_r",
    "right_forearm": "arm_r",
    "right_hand": "arm_r",
    "left_thigh": "leg_l",
    "left_shin": "leg_l",
    "left_foot": "leg_l",
    "right_thigh": "leg_r",
    "right_shin": "leg_r",
    "right_foot": "leg_r",
}
# Texture panel of each region: both arms share one, both legs another.
_REGION_PANEL = {"trunk": "trunk", "arm_l": "limb", "arm_r": "limb", "leg_l": "limb", "leg_r": "limb", "head": "trunk"}

# Outward offsets (metres) that order the painted layers; well under a pixel
# (about 1.8 cm at 128x96), so they never change a silhouette visibly.
OFFSET_M = {"shoes": 0.002, "hair": 0.002, "lower": 0.0035, "upper": 0.005}
PRINT_WIDTH_M = {"logo": 0.17, "text": 0.22}


@dataclass(frozen=True)
class Layer:
    """Textured pieces of one garment (or a solid), ready to pose.

    piece: the cut-out (edge-point vertices of the body) or None for a
    solid; solid: rest positions (N, 3) and per-frame skinning weights of a
    free-standing mesh such as a skirt cone; faces index the piece or solid
    vertices; uv: (N, 2) texture coordinates (see `Cloth.texture`); panel:
    (N,) index into PANELS of the texture panel each vertex samples.
    """

    faces: np.ndarray
    uv: np.ndarray
    panel: np.ndarray
    piece: Piece | None = None
    solid_rest: np.ndarray | None = None
    solid_weights: np.ndarray | None = None  # (N, len(FRAMES))


@dataclass(frozen=True)
class Cloth:
    """A garment ready to dress: layers, one texture and the rest-face cover mask.

    texture: uint8 (H, W, 3), the garment's panels (trunk, limbs, skirt cone)
    stacked vertically at one width, so the whole garment is one primitive
    with one texture. Layer UVs are OpenGL coordinates into it: u wraps
    around the body (repeat), t = 1 is the top row (pyrender uploads rows
    bottom-up).
    """

    spec: GarmentSpec
    layers: tuple[Layer, ...]
    texture: np.ndarray
    covers: np.ndarray  # (F,) bool: body faces the garment hides entirely
    field: np.ndarray  # (V,) the rest-pose field (> 0 on the garment)


FRAMES: tuple[str, ...] = ("pelvis", "thigh_l", "thigh_r", "head")
PANELS: tuple[str, ...] = ("trunk", "limb", "cone")


class Tailor:
    """The rest body's landmarks, region cylinders and rigid frames; cuts garments.

    Built once per body backend (geometry of the shape-0 rest pose). Garments
    cut here fit every shape and pose because they are stored per vertex.
    """

    def __init__(self, body: Body | LowPolyBody) -> None:
        rest = body.rest()
        self.faces = np.asarray(rest.faces, dtype=np.int64)
        self.vertices = rest.vertices.astype(np.float64)  # (V, 3)
        joints = {name: rest.joints[i].astype(np.float64) for i, name in enumerate(JOINT_NAMES)}
        self.joints = joints
        part = np.asarray(PART_NAMES)[rest.part_labels]
        self.region = np.array([REGIONS.index(_PART_REGION[p]) for p in part])  # (V,)
        self.is_part = {name: part == name for name in PART_NAMES}
        corner = self.region[self.faces]
        # A face belongs to the region two of its corners share, else its first corner's.
        self.face_region = np.where(corner[:, 1] == corner[:, 2], corner[:, 1], corner[:, 0])

        y = self.vertices[:, 1]
        torso = self.is_part["torso"]
        self.y_crotch = float(y[torso].min())
        self.y_chest = float(joints["spine3"][1])
        self.y_navel = float(joints["spine1"][1])
        self.y_hip = float((joints["left_hip"][1] + joints["right_hip"][1]) / 2)
        self.y_ankle = float((joints["left_ankle"][1] + joints["right_ankle"][1]) / 2)
        self.y_torso_top = float(y[torso].max())
        arms = self.is_part["left_upper_arm"] | self.is_part["right_upper_arm"]
        self.y_armpit = float(y[arms].min()) - 0.005
        self.cylinders = self._cylinders()
        strongest = body.strongest_joint
        head = self.is_part["head"]
        self.head_center = self.vertices[head].mean(axis=0)
        self.head_radius = 0.5 * (self.vertices[head].max(axis=0) - self.vertices[head].min(axis=0))
        # Rigid vertex groups whose posed copies fix each frame (Kabsch).
        self.frame_vertices = {
            "pelvis": np.flatnonzero(strongest == JOINT_NAMES.index("pelvis")),
            "thigh_l": np.flatnonzero(strongest == JOINT_NAMES.index("left_hip")),
            "thigh_r": np.flatnonzero(strongest == JOINT_NAMES.index("right_hip")),
            "head": np.flatnonzero(head & (y > self.head_center[1])),
        }

    # -- rest-pose geometry -------------------------------------------------

    def _cylinders(self) -> dict[str, Cylinder]:
        j, v = self.joints, self.vertices

        def points(name: str) -> np.ndarray:
            return v[self.region == REGIONS.index(name)]

        trunk = trunk_cylinder(points("trunk"), self.y_torso_top, self.y_crotch)
        return {
            "trunk": trunk,
            "head": trunk,
            # Arms: u = 0.5 on top, the seam underneath; legs: u = 0.5 in front, the seam behind.
            "arm_l": limb_cylinder(j["left_shoulder"], j["left_wrist"], (0.0, 1.0, 0.0), points("arm_l")),
            "arm_r": limb_cylinder(j["right_shoulder"], j["right_wrist"], (0.0, 1.0, 0.0), points("arm_r")),
            "leg_l": limb_cylinder(j["left_hip"], j["left_ankle"], (0.0, 0.0, 1.0), points("leg_l")),
            "leg_r": limb_cylinder(j["right_hip"], j["right_ankle"], (0.0, 0.0, 1.0), points("leg_r")),
        }

    def arm_position(self, points: np.ndarray) -> np.ndarray:
        """(N,) position along the arm of each rest point: 0 at the shoulder, 1 at the wrist (per side)."""
        left = points[:, 0] > 0
        out = np.empty(len(points))
        for mask, name in ((left, "arm_l"), (~left, "arm_r")):
            c = self.cylinders[name]
            out[mask] = (points[mask] - c.origin) @ c.axis / c.length_m
        return out

    def leg_height(self, fraction: float) -> float:
        """Rest height of a point `fraction` of the way from the hips (0) to the ankles (1)."""
        return self.y_hip + fraction * (self.y_ankle - self.y_hip)

    # -- fields ---------------------------------------------------------------

    def upper_field(self, spec: GarmentSpec) -> np.ndarray:
        """(V,) > 0 on a top: trunk and arms, above the hem, below the neckline, inside the sleeves."""
        v = self.vertices
        x, y, z = v[:, 0], v[:, 1], v[:, 2]
        hem_y = self.y_chest - spec.hem * (self.y_chest - self.y_crotch)
        f_hem = y - hem_y
        # Positive towards the body; below the armpits the trunk's sides stay
        # covered whatever the sleeve (an armhole only opens at the shoulder).
        f_sleeve = spec.sleeve - self.arm_position(v) + 10.0 * np.maximum(0.0, self.y_armpit - y)
        front = z > self.cylinders["trunk"].origin[2]
        top = self.y_torso_top
        if spec.neckline == "v":
            neck = np.where(front, top - 0.17 + 2.0 * np.abs(x) - y, 1.0)
        elif spec.neckline == "scoop":
            neck = np.where(front, top - 0.11 + 18.0 * x**2 - y, 1.0)
        else:
            neck = np.ones(len(v))
        field = np.minimum(np.minimum(f_hem, f_sleeve), neck)
        allowed = np.isin(self.region, [REGIONS.index(r) for r in ("trunk", "arm_l", "arm_r", "leg_l", "leg_r")])
        return np.where(allowed & ~self.is_part["neck"], field, -1.0)

    def lower_field(self, spec: GarmentSpec) -> np.ndarray:
        """(V,) > 0 on a bottom: between waist and hem (a skirt paints only the hips; its cone does the rest)."""
        y = self.vertices[:, 1]
        waist_y = self.y_hip + spec.waist * (self.y_navel - self.y_hip)
        hem_y = self.y_crotch - 0.01 if spec.style == "skirt" else self.leg_height(spec.hem)
        field = np.minimum(waist_y - y, y - hem_y)
        regions = ("trunk",) if spec.style == "skirt" else ("trunk", "leg_l", "leg_r")
        return np.where(np.isin(self.region, [REGIONS.index(r) for r in regions]), field, -1.0)

    def shoe_field(self, top_m: float) -> np.ndarray:
        """(V,) > 0 on the feet and legs below `top_m` metres above the ankle joint."""
        y = self.vertices[:, 1]
        legs = np.isin(self.region, [REGIONS.index("leg_l"), REGIONS.index("leg_r")])
        return np.where(legs, self.y_ankle + top_m - y, -1.0)

    def hair_field(self, front: float, back: float) -> np.ndarray:
        """(V,) > 0 on the head above a hairline at `front` (forehead) / `back` (nape) head radii."""
        rel = (self.vertices - self.head_center) / self.head_radius
        facing = (1.0 + rel[:, 2] / np.maximum(np.hypot(rel[:, 0], rel[:, 2]), 1e-9)) / 2  # 1 front, 0 back
        hairline = back + (front - back) * facing**2
        return np.where(self.is_part["head"], rel[:, 1] - hairline, -1.0)

    # -- garments -------------------------------------------------------------

    def painted(self, field: np.ndarray, textured: bool = True) -> Layer:
        """The body surface where `field` > 0 as a layer with cylinder UVs."""
        piece = cut(self.faces, field)
        region = self.face_region[piece.source_face]  # (M,)
        rest = piece.interpolate(self.vertices)
        corners = rest[piece.faces]  # (M, 3, 3)
        uv = np.zeros((len(piece.faces), 3, 2))
        if textured:
            for index, name in enumerate(REGIONS):
                mask = region == index
                if mask.any():
                    uv[mask] = self.cylinders[name].uv(corners[mask].reshape(-1, 3)).reshape(-1, 3, 2)
        # A face across the seam (u jumps by ~1) takes the copy shifted by one turn.
        wraps = (uv[..., 0].max(axis=1) - uv[..., 0].min(axis=1)) > 0.5
        shift = wraps[:, None] & (uv[..., 0] < 0.5)
        uv[..., 0] += shift
        key = region[:, None] * 2 + shift
        piece, vertex_uv = unweld(piece, uv, key)
        face_panel = np.array([PANELS.index(_REGION_PANEL[name]) for name in REGIONS])[region]
        panel = np.zeros(len(vertex_uv), dtype=np.int64)
        panel[piece.faces] = face_panel[:, None]  # unwelded: each vertex lies in one region
        return Layer(faces=piece.faces, uv=vertex_uv.astype(np.float32), panel=panel, piece=piece)

    def cloth(self, spec: GarmentSpec) -> Cloth:
        """Cut, map and texture one garment (panels in PANELS order, packed into one texture)."""
        field = self.upper_field(spec) if spec.slot == "upper" else self.lower_field(spec)
        layers = [self.painted(field)]
        trunk = self.cylinders["trunk"]
        prints: tuple[Print, ...] = ()
        if spec.pattern.kind in PRINT_WIDTH_M:
            chest_v = (trunk.origin[1] - (self.y_chest + 0.03)) / trunk.length_m
            prints = (Print(0.5, chest_v, PRINT_WIDTH_M[spec.pattern.kind]),)
        limb = self.cylinders["leg_l" if spec.slot == "lower" else "arm_l"]
        sizes = [(trunk.circumference_m, trunk.length_m, prints), (limb.circumference_m, limb.length_m, ())]
        if spec.style == "skirt":
            cone, circumference, length = self.skirt_cone(spec)
            layers.append(cone)
            sizes.append((circumference, length, ()))
        width = max(fabric_panel_width(c) for c, _, _ in sizes)
        panels = [fabric_panel(spec.pattern, c, length, p, width_px=width) for c, length, p in sizes]
        texture, layers = _pack(panels, layers)
        return Cloth(spec, tuple(layers), texture, covered_faces(self.faces, field), field)

    def skirt_cone(self, spec: GarmentSpec, sectors: int = 48, rings: int = 8) -> tuple[Layer, float, float]:
        """An open cone from just below the hips to the hem that encloses the legs at rest.

        Returns the layer, its mean circumference and its slant length (for its texture panel).
        """
        v = self.vertices
        axis_center = np.array([0.0, 0.0, self.cylinders["trunk"].origin[2]])
        y_top = self.y_crotch + 0.1
        y_hem = self.leg_height(spec.hem)
        angles = np.linspace(-np.pi, np.pi, sectors, endpoint=False)  # angle 0 = front (+z)
        rel = v - axis_center
        vertex_angle = np.arctan2(rel[:, 0], rel[:, 2])
        vertex_radius = np.hypot(rel[:, 0], rel[:, 2])
        sector = np.round((vertex_angle + np.pi) / (2 * np.pi) * sectors).astype(int) % sectors
        below_arms = ~np.isin(self.region, [REGIONS.index("arm_l"), REGIONS.index("arm_r")])
        heights = np.linspace(y_top, y_hem, rings)
        radius = np.zeros((rings, sectors))
        for i, h in enumerate(heights):
            # The body's extent around the axis in a slab above this ring (the legs splay downwards).
            slab = below_arms & (v[:, 1] <= h + 0.04) & (v[:, 1] >= h - 0.02)
            need = np.zeros(sectors)
            np.maximum.at(need, sector[slab], vertex_radius[slab])
            # A neighbourhood max closes the gaps between legs and smooths the outline.
            need = np.max([np.roll(need, k) for k in range(-3, 4)], axis=0) + 0.012
            radius[i] = need
        top = radius[0]
        bottom = np.maximum(radius[-1], top) * spec.flare
        fraction = np.linspace(0.0, 1.0, rings)[:, None]
        radius = np.maximum(top + (bottom - top) * fraction, radius)
        radius = (radius + np.roll(radius, 1, axis=1) + np.roll(radius, -1, axis=1)) / 3
        # Vertices: rings x (sectors + 1): the last column repeats the first with u = 1 (the seam).
        cols = np.concatenate([angles, [angles[0] + 2 * np.pi]])
        rad = np.concatenate([radius, radius[:, :1]], axis=1)
        positions = np.stack(
            [
                axis_center[0] + rad * np.sin(cols),
                np.broadcast_to(heights[:, None], rad.shape),
                axis_center[2] + rad * np.cos(cols),
            ],
            axis=-1,
        ).reshape(-1, 3)
        slant = np.linalg.norm(np.diff(positions.reshape(rings, -1, 3), axis=0), axis=-1).sum(axis=0).mean()
        u = np.broadcast_to((cols + np.pi) / (2 * np.pi), rad.shape)
        arc = np.concatenate(
            [[0.0], np.cumsum(np.linalg.norm(np.diff(positions.reshape(rings, -1, 3), axis=0), axis=-1).mean(axis=1))]
        )
        uv = np.stack([u, np.broadcast_to((arc / slant)[:, None], rad.shape)], axis=-1).reshape(-1, 2)
        idx = np.arange(rings * (sectors + 1)).reshape(rings, sectors + 1)
        a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
        # Outward-facing winding (seen from outside: counter-clockwise), then the
        # same triangles reversed: the open cone shows its inside from below.
        outside = np.concatenate([np.stack([a, d, c], -1).reshape(-1, 3), np.stack([a, c, b], -1).reshape(-1, 3)])
        faces = np.concatenate([outside, outside[:, ::-1]])
        weights = _skirt_weights(positions, y_top, y_hem, axis_center)
        circumference = float(2 * np.pi * radius.mean())
        layer = Layer(
            faces=faces,
            uv=uv.astype(np.float32),
            panel=np.full(len(positions), PANELS.index("cone")),
            solid_rest=positions,
            solid_weights=weights,
        )
        return layer, circumference, float(slant)

    def frames(self, posed: PosedMesh) -> np.ndarray:
        """(len(FRAMES), 3, 4) rigid transforms rest -> posed of the pelvis, thighs and head (Kabsch)."""
        out = np.zeros((len(FRAMES), 3, 4))
        for i, name in enumerate(FRAMES):
            index = self.frame_vertices[name]
            out[i] = _kabsch(self.vertices[index], posed.vertices[index].astype(np.float64))
        return out


def _pack(panels: list[np.ndarray], layers: list[Layer]) -> tuple[np.ndarray, list[Layer]]:
    """Stack same-width panels into one texture and move each layer's UVs into it.

    Two replicated rows around each panel keep bilinear filtering from
    mixing neighbouring panels at the finest mip level.
    """
    pad = 2
    padded = [np.pad(p, ((pad, pad), (0, 0), (0, 0)), mode="edge") for p in panels]
    starts = np.cumsum([0] + [p.shape[0] for p in padded])[:-1] + pad
    heights = np.array([p.shape[0] for p in panels])
    texture = np.concatenate(padded, axis=0)
    total = texture.shape[0]
    moved = []
    for layer in layers:
        uv = layer.uv.astype(np.float64).copy()
        rows = starts[layer.panel] + np.clip(uv[:, 1], 0.0, 1.0) * heights[layer.panel]  # clamp along the body
        uv[:, 1] = 1.0 - rows / total  # OpenGL t: pyrender uploads rows bottom-up
        moved.append(
            Layer(layer.faces, uv.astype(np.float32), layer.panel, layer.piece, layer.solid_rest, layer.solid_weights)
        )
    return texture, moved


def _skirt_weights(points: np.ndarray, y_top: float, y_hem: float, center: np.ndarray) -> np.ndarray:
    """(N, 4) frame weights: the waist follows the pelvis, the hem partly follows each thigh."""
    depth = np.clip((y_top - points[:, 1]) / max(y_top - y_hem, 1e-6), 0.0, 1.0)
    side = np.clip(0.5 + 2.5 * (points[:, 0] - center[0]), 0.0, 1.0)  # 1 on the body's left
    w = np.zeros((len(points), len(FRAMES)))
    follow = 0.85 * depth**0.7
    w[:, 1] = follow * side
    w[:, 2] = follow * (1 - side)
    w[:, 0] = 1.0 - w[:, 1] - w[:, 2]
    return w


def _kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3, 4) [R | t] minimising |R source + t - target|^2 over rotations."""
    cs, ct = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((source - cs).T @ (target - ct))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return np.concatenate([rotation, (ct - rotation @ cs)[:, None]], axis=1)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3) float64."""
    v = np.asarray(vertices, dtype=np.float64)
    face_normals = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    normals = np.zeros_like(v)
    for k in range(3):
        normals += np.stack([np.bincount(faces[:, k], face_normals[:, i], len(v)) for i in range(3)], axis=1)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def place(
    layer: Layer, vertices: np.ndarray, normals: np.ndarray, frames: np.ndarray, offset_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Posed (N, 3) positions and normals of a layer, float32.

    Painted layers blend posed body vertices and push out by `offset_m` along
    the blended normals; solids are skinned to the rigid frames.
    """
    if layer.piece is not None:
        position = layer.piece.interpolate(vertices)
        normal = layer.piece.interpolate(normals)
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        return (position + offset_m * normal).astype(np.float32), normal.astype(np.float32)
    rest, weights = layer.solid_rest, layer.solid_weights
    homogeneous = np.concatenate([rest, np.ones((len(rest), 1))], axis=1)  # (N, 4)
    moved = np.einsum("kij,nj->nki", frames, homogeneous)  # (N, K, 3)
    position = np.einsum("nk,nki->ni", weights, moved)
    return position.astype(np.float32), vertex_normals(position, layer.faces).astype(np.float32)
