"""Garment specs, fabric textures and the exact mesh cut (no OpenGL, no body model)."""

from __future__ import annotations

import numpy as np
import pytest

from omfa.data.cutting import covered_faces, cut
from omfa.data.garments import (
    LOWER_STYLES,
    UPPER_STYLES,
    GarmentSpec,
    GarmentSpecError,
    Pattern,
    Print,
    fabric_panel,
    pattern_field,
    sample_garment,
)


def grid_mesh(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A unit square in the xy plane, (n+1)^2 vertices, counter-clockwise triangles."""
    xs = np.linspace(0.0, 1.0, n + 1)
    x, y = np.meshgrid(xs, xs)
    vertices = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return vertices, faces


def signed_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    return 0.5 * np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 2]


def test_cut_keeps_exactly_the_half_plane_area():
    vertices, faces = grid_mesh()
    # Inside where 0.8 x + 0.3 y < 0.37: a trapezoid of area 0.275 (closed form).
    field = 0.37 - (0.8 * vertices[:, 0] + 0.3 * vertices[:, 1])
    piece = cut(faces, field)
    positions = piece.interpolate(vertices)
    areas = signed_areas(positions, piece.faces)
    assert areas.sum() == pytest.approx(0.275, abs=1e-12)
    assert areas.min() >= 0.0  # winding kept (no flipped triangle)
    # Every new vertex lies on the zero line; the field is >= 0 on the piece.
    assert np.abs(piece.interpolate(field)[piece.t > 0]).max() < 1e-12
    assert piece.interpolate(field).min() > -1e-12


def test_cut_shares_edge_points_between_neighbours():
    vertices, faces = grid_mesh(10)
    field = 0.5 - np.hypot(vertices[:, 0] - 0.5, vertices[:, 1] - 0.5)  # a disc
    piece = cut(faces, field)
    # A connected cut-out of a disc: each boundary edge is used once, inner edges twice.
    edges = np.sort(np.concatenate([piece.faces[:, [0, 1]], piece.faces[:, [1, 2]], piece.faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert set(np.unique(counts)) <= {1, 2}
    boundary = (counts == 1).sum()
    positions = piece.interpolate(vertices)
    assert np.allclose(
        np.hypot(positions[piece.t > 0, 0] - 0.5, positions[piece.t > 0, 1] - 0.5)[:boundary], 0.5, atol=0.02
    )


def test_covered_faces_needs_all_three_corners():
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    field = np.array([1.0, 1.0, 1.0, -1.0])
    assert covered_faces(faces, field).tolist() == [True, False]


@pytest.mark.parametrize("kind", ["stripes", "checks", "dots"])
def test_patterns_repeat_with_whole_periods(kind):
    pattern = Pattern(kind, (200, 30, 30), (250, 250, 250), 0.1, 0.4, "diagonal" if kind == "stripes" else "horizontal")
    # Sample points off the motif edges, where rounding could flip a value.
    a, b = np.meshgrid(np.linspace(0, 3, 61) + 0.013, np.linspace(0, 2, 41) + 0.007)
    field = pattern_field(pattern, a, b)
    assert np.array_equal(field, pattern_field(pattern, a + 1.0, b))
    assert np.array_equal(field, pattern_field(pattern, a, b + 1.0))
    assert 0.1 < field.mean() < 0.9  # both colours present


def test_fabric_panel_is_seamless_around_the_body():
    pattern = Pattern("stripes", (20, 40, 200), (250, 250, 250), 0.1, 0.5, "vertical")
    panel = fabric_panel(pattern, 0.72, 0.5)
    assert panel.dtype == np.uint8 and panel.shape[1] % 4 == 0
    # Around the seam (the panel tiled twice) every stripe and gap keeps its
    # width to a texel: a fractional last period would leave a sliver.
    row = np.concatenate([panel, panel], axis=1)[0, :, 0] > 128
    edges = np.flatnonzero(np.diff(row.astype(int))) + 1
    runs = np.diff(edges)  # whole runs only (the first and last are cut by the ends)
    stripes, gaps = runs[row[edges[:-1]]], runs[~row[edges[:-1]]]
    assert stripes.max() - stripes.min() <= 1 and gaps.max() - gaps.min() <= 1
    assert len(stripes) >= 2 * round(0.72 / 0.1) - 1
    # Only the two colours (and their blends at motif edges) appear.
    colours = {tuple(c) for c in panel.reshape(-1, 3)}
    assert (20, 40, 200) in colours and (250, 250, 250) in colours


def test_print_lands_at_the_front_centre():
    pattern = Pattern("logo", (30, 30, 30), (255, 255, 255), motif="circle")
    panel = fabric_panel(pattern, 0.8, 0.6, (Print(0.5, 0.3, 0.2),)).astype(int)
    bright = np.argwhere(panel.sum(axis=2) > 600)
    centre = bright.mean(axis=0) / panel.shape[:2]
    assert centre == pytest.approx([0.3, 0.5], abs=0.03)
    width_m = (bright[:, 1].max() - bright[:, 1].min() + 1) / panel.shape[1] * 0.8
    assert width_m == pytest.approx(0.2, abs=0.02)


def test_sampling_is_deterministic_and_covers_every_style():
    first = [sample_garment(np.random.default_rng(i), "upper", f"u{i}") for i in range(60)]
    again = [sample_garment(np.random.default_rng(i), "upper", f"u{i}") for i in range(60)]
    assert first == again
    lowers = [sample_garment(np.random.default_rng(i), "lower", f"l{i}") for i in range(60)]
    assert {g.style for g in first} == set(UPPER_STYLES)
    assert {g.style for g in lowers} == set(LOWER_STYLES)
    assert all(g.pattern.kind not in ("logo", "text") for g in lowers)
    sleeves = {g.style: g.sleeve for g in first}
    assert sleeves["sleeveless"] < 0 < sleeves["short_sleeve"] < sleeves["long_sleeve"]


def test_spec_json_round_trip_and_errors():
    spec = sample_garment(np.random.default_rng(3), "lower", "l3")
    assert GarmentSpec.from_json(spec.to_json()) == spec
    with pytest.raises(GarmentSpecError, match="style 'cape'"):
        GarmentSpec("x", "upper", "cape", Pattern("solid", (1, 2, 3)), hem=0.5)
    with pytest.raises(GarmentSpecError, match="period 0.001 m"):
        Pattern("stripes", (1, 2, 3), period_m=0.001)
    with pytest.raises(GarmentSpecError, match="multiple of 4"):
        fabric_panel(Pattern("solid", (1, 2, 3)), 0.5, 0.5, width_px=30)
