"""Garments cut from the rest-pose mannequin and dressed in other poses (no OpenGL)."""

from __future__ import annotations

import numpy as np
import pytest

from omfa.data.garments import GarmentSpec, Pattern
from omfa.data.people import identity_layers, sample_identity
from omfa.data.tailor import FRAMES, REGIONS, Tailor, place, vertex_normals
from omfa.pose.body import PART_NAMES, Pose, load_body
from omfa.pose.lowpoly import LowPolyBody

STRIPES = Pattern("stripes", (200, 30, 30), (250, 250, 250), 0.1, 0.4)


@pytest.fixture(scope="module")
def body() -> LowPolyBody:
    return LowPolyBody(load_body())


@pytest.fixture(scope="module")
def tailor(body) -> Tailor:
    return Tailor(body)


def top(sleeve: float, hem: float = 0.6, neckline: str = "crew") -> GarmentSpec:
    style = "sleeveless" if sleeve < 0 else "short_sleeve" if sleeve < 0.6 else "long_sleeve"
    return GarmentSpec("t", "upper", style, STRIPES, hem=hem, sleeve=sleeve, neckline=neckline)


def piece_area(tailor: Tailor, cloth) -> float:
    layer = cloth.layers[0]
    points = layer.piece.interpolate(tailor.vertices)[layer.faces]
    return float(0.5 * np.linalg.norm(np.cross(points[:, 1] - points[:, 0], points[:, 2] - points[:, 0]), axis=1).sum())


def test_low_poly_body_is_a_subset_posed_like_the_full_body(body):
    full = body.body.posed(Pose.zero())
    small = body.rest()
    assert len(body.faces) <= 10_500 and len(small.vertices) < len(full.vertices) / 3
    assert np.array_equal(small.vertices, full.vertices[body.kept])
    assert small.faces is body.faces  # a fixed object: the pose renderer caches its part split on it


def test_cut_edges_lie_on_the_field_zero_line(tailor):
    cloth = tailor.cloth(top(0.3))
    piece = cloth.layers[0].piece
    on_edge = piece.t > 0
    assert np.abs(piece.interpolate(cloth.field)[on_edge]).max() < 1e-9
    assert piece.interpolate(cloth.field).min() > -1e-9


def test_longer_sleeves_and_hems_cover_more(tailor):
    areas = [piece_area(tailor, tailor.cloth(top(s))) for s in (-0.06, 0.3, 0.95)]
    assert areas[0] < areas[1] < areas[2]
    hems = [piece_area(tailor, tailor.cloth(top(0.3, hem=h))) for h in (0.25, 0.6, 0.9)]
    assert hems[0] < hems[1] < hems[2]
    # A T-shirt covers the trunk: of the order of a torso's surface (with the wooden
    # mannequin's ball joints and segment ends, 0.4 to 1.1 m^2).
    assert 0.4 < areas[1] < 1.1


def test_sleeveless_keeps_the_trunk_sides(tailor):
    sleeveless = tailor.cloth(top(-0.06)).field
    torso = (
        tailor.is_part["torso"]
        & (tailor.vertices[:, 1] < tailor.y_armpit - 0.02)
        & (tailor.vertices[:, 1] > tailor.y_navel)
    )
    assert (sleeveless[torso] > 0).mean() > 0.98
    arms = tailor.is_part["left_forearm"] | tailor.is_part["right_forearm"]
    assert (sleeveless[arms] <= 0).all()


def test_trousers_cover_legs_shorts_stop_above_knee(tailor):
    trousers = tailor.cloth(GarmentSpec("p", "lower", "trousers", STRIPES, hem=0.95, waist=0.5)).field
    shorts = tailor.cloth(GarmentSpec("s", "lower", "shorts", STRIPES, hem=0.3, waist=0.5)).field
    shins = tailor.is_part["left_shin"] | tailor.is_part["right_shin"]
    knee_y = tailor.leg_height(0.5)
    assert (trousers[shins & (tailor.vertices[:, 1] > tailor.leg_height(0.9))] > 0).all()
    assert (shorts[tailor.vertices[:, 1] < knee_y] <= 0).all()


def test_uvs_follow_the_body_in_any_pose(tailor, body):
    cloth = tailor.cloth(top(0.95))
    layer = cloth.layers[0]
    # Texture coordinates are per vertex constants; a posed copy is a blend of posed body vertices.
    posed = body.posed(Pose(np.zeros(3), np.random.default_rng(0).uniform(-0.4, 0.4, (21, 3))))
    normals = vertex_normals(posed.vertices, posed.faces)
    frames = tailor.frames(posed)
    positions, _ = place(layer, posed.vertices, normals, frames, 0.0)
    expected = layer.piece.interpolate(posed.vertices.astype(np.float64))
    assert np.abs(positions - expected).max() < 1e-5
    # UVs inside the packed texture; triangles across the back seam take the copy
    # shifted by a turn, so only triangles around a cylinder's axis (segment ends
    # hidden inside the wooden mannequin's ball joints) span much of a turn.
    assert layer.uv.min() >= -1e-6 and layer.uv[:, 1].max() <= 1.0 + 1e-6
    spread = np.ptp(layer.uv[layer.faces][..., 0], axis=1)
    assert (spread > 0.25).mean() < 0.05


def test_frames_are_identity_at_rest_and_rigid_when_posed(tailor, body):
    frames = tailor.frames(body.rest())
    for frame in frames:
        assert np.allclose(frame[:, :3], np.eye(3), atol=1e-6) and np.allclose(frame[:, 3], 0, atol=1e-6)
    pose = Pose(np.array([0.0, 0.7, 0.0]), np.zeros((21, 3)))  # the whole body turned 40 degrees
    turned = tailor.frames(body.posed(pose))
    rotation = turned[FRAMES.index("head"), :, :3]
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
    assert np.degrees(np.arccos((np.trace(rotation) - 1) / 2)) == pytest.approx(np.degrees(0.7), abs=0.5)


def test_skirt_cone_encloses_the_legs_at_rest(tailor):
    spec = GarmentSpec("k", "lower", "skirt", STRIPES, hem=0.5, waist=0.5, flare=1.0)
    cone = tailor.cloth(spec).layers[1]
    assert cone.piece is None and cone.solid_rest is not None
    rings = cone.solid_rest.reshape(8, -1, 3)[:, :-1]  # rings x sectors (the seam column repeats the first)
    center = np.array([0.0, tailor.cylinders["trunk"].origin[2]])
    legs = np.isin(tailor.region, [REGIONS.index("leg_l"), REGIONS.index("leg_r")])
    for ring in rings[1:]:
        near = legs & (np.abs(tailor.vertices[:, 1] - ring[0, 1]) < 0.01)
        rel = tailor.vertices[near][:, [0, 2]] - center
        sectors = np.round((np.arctan2(rel[:, 0], rel[:, 1]) + np.pi) / (2 * np.pi) * len(ring)).astype(int) % len(ring)
        cone_radius = np.hypot(ring[:, 0] - center[0], ring[:, 2] - center[1])
        # Every leg point is inside the cone in its direction (neighbouring sectors for the angular step).
        inside = np.minimum.reduce([np.roll(cone_radius, k) for k in (-1, 0, 1)])[sectors]
        assert (np.hypot(rel[:, 0], rel[:, 1]) < inside).all()
    weights = cone.solid_weights
    assert np.allclose(weights.sum(axis=1), 1.0) and weights.min() >= 0


def test_identity_layers_hair_and_shoes(tailor):
    people = [sample_identity(np.random.default_rng(i), f"p{i}") for i in range(40)]
    for person in people[:12]:
        layers = identity_layers(tailor, person)
        assert (len(layers.hair) == 0) == (person.hair_style == "bald")
        assert (layers.shoes is None) == (person.shoes == "none")
    heights = [p.shape[0] for p in people]
    assert min(heights) < -0.5 and max(heights) > 0.5
    head = tailor.is_part["head"]
    cap = tailor.hair_field(0.45, -0.35)
    # The cap covers the top and back of the head, not the face.
    assert (cap[head & (tailor.vertices[:, 1] > tailor.head_center[1] + 0.08)] > 0).all()
    face = (
        head
        & (tailor.vertices[:, 2] > tailor.head_center[2] + 0.08)
        & (np.abs(tailor.vertices[:, 1] - tailor.head_center[1]) < 0.02)
    )
    assert (cap[face] <= 0).all()
    assert PART_NAMES.index("head") >= 0
