"""Rendering: pose maps, the shared camera, person renders, thumbnails, GLB export."""

from __future__ import annotations

import io

import numpy as np
import pytest

from omfa.gl import pyrender
from omfa.pose.body import JOINT_NAMES, PART_NAMES, Pose
from omfa.pose.condition import pose_condition, sample_key
from omfa.pose.edit import set_joint
from omfa.pose.lowpoly import LowPolyBody
from omfa.pose.render import PALETTE, PoseRenderer, RenderSizeError, export_glb, project

SIZE_HW = (128, 96)  # a person about 96 px tall


def _color_area(image: np.ndarray, part: str) -> int:
    return int(np.all(image == PALETTE[PART_NAMES.index(part)], axis=-1).sum())


def test_pose_map_is_exact_palette_and_framed(body, renderer) -> None:
    image = renderer.pose_map(body.rest(), 0.0, SIZE_HW)
    assert image.shape == (*SIZE_HW, 3) and image.dtype == np.uint8
    colours = {tuple(c) for c in np.unique(image.reshape(-1, 3), axis=0)}
    assert colours <= {tuple(c) for c in PALETTE} | {(0, 0, 0)}  # no blended edge colours
    assert len(colours) == len(PART_NAMES) + 1  # every part is visible in the T-pose
    rows, cols = np.nonzero(image.any(axis=-1))
    assert 94 <= rows.max() - rows.min() + 1 <= 99  # a 1.72 m body is about 96 px tall
    assert rows.max() <= SIZE_HW[0] - 3 and cols.min() >= 1 and cols.max() <= SIZE_HW[1] - 2


def test_yaw_shows_the_named_side(body, renderer) -> None:
    mesh = body.posed(set_joint(set_joint(Pose.zero(), "left_shoulder", (0, 0, -70)), "right_shoulder", (0, 0, 70)))
    front = renderer.pose_map(mesh, 0.0, SIZE_HW)
    left_cols = np.nonzero(np.all(front == PALETTE[PART_NAMES.index("left_upper_arm")], axis=-1))[1]
    assert left_cols.mean() > SIZE_HW[1] / 2  # facing the camera, the body's left is on the image right
    back = renderer.pose_map(mesh, 180.0, SIZE_HW)
    left_cols = np.nonzero(np.all(back == PALETTE[PART_NAMES.index("left_upper_arm")], axis=-1))[1]
    assert left_cols.mean() < SIZE_HW[1] / 2
    side = renderer.pose_map(mesh, 90.0, SIZE_HW)  # yaw 90 shows the body's left side
    assert _color_area(side, "left_upper_arm") > 3 * max(_color_area(side, "right_upper_arm"), 1)
    assert _color_area(side, "left_thigh") > 2 * max(_color_area(side, "right_thigh"), 1)


def test_project_lands_on_the_rendered_part(body, renderer) -> None:
    mesh = body.rest()
    for yaw in (0.0, 30.0, -60.0):
        image = renderer.pose_map(mesh, yaw, (256, 192))
        for joint, part in (("head", "head"), ("spine2", "torso"), ("left_knee", "left_shin")):
            x, y, depth = project(mesh.joints[[JOINT_NAMES.index(joint)]], yaw, (256, 192))[0]
            assert 4.5 < depth < 5.5
            window = image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].reshape(-1, 3)
            expected = PALETTE[PART_NAMES.index(part)]
            if part == "left_shin":  # the knee joint sits on the thigh/shin border
                allowed = {tuple(expected), tuple(PALETTE[PART_NAMES.index("left_thigh")])}
                assert {tuple(c) for c in window} & allowed
            else:
                assert (window == expected).all(axis=1).sum() >= 5, (joint, yaw)


def test_render_lines_up_with_the_pose_map(body, renderer) -> None:
    mesh = body.posed(set_joint(Pose.zero(), "right_elbow", (0, 90, 0)))
    label = renderer.pose_map(mesh, 20.0, SIZE_HW)
    primitive = pyrender.Primitive(
        positions=mesh.vertices,
        indices=mesh.faces.astype(np.uint32),
        material=pyrender.MetallicRoughnessMaterial(baseColorFactor=(0.2, 0.3, 0.9, 1.0)),
    )
    color, depth = renderer.render([pyrender.Mesh([primitive])], 20.0, SIZE_HW, flat=True)
    assert color.shape == (*SIZE_HW, 3) and depth.dtype == np.float32
    touched = np.any(color < 255, axis=-1)  # any coverage, anti-aliased edges included
    covered = np.all(np.abs(color.astype(int) - [51, 76, 230]) <= 3, axis=-1)  # fully covered pixels
    mapped = label.any(axis=-1)
    # Same camera and framing: the label map lies between the full and the partial coverage.
    assert np.all(mapped[covered]) and np.all(touched[mapped])
    assert covered.sum() > 0.7 * mapped.sum()
    assert np.all(depth[~touched] == 0.0) and np.all(color[~touched] == 255)  # white background
    assert depth[covered].min() > 4.7 and depth[covered].max() < 5.3  # metres from the camera


def test_thumbnail_has_a_face_only_in_front(body, renderer) -> None:
    mesh = body.rest()
    front = renderer.thumbnail(mesh, 0.0)
    back = renderer.thumbnail(mesh, 180.0)
    assert front.shape == (256, 256, 3)
    assert np.all(front[0, 0] == front[-1, -1]) and front[0, 0].min() > 230  # light background
    x, y, _ = project(mesh.joints[[JOINT_NAMES.index("head")]], 0.0, (256, 256))[0]
    eyes = (slice(int(y) - 10, int(y) - 3), slice(int(x) - 6, int(x) + 7))  # just above the head joint
    assert (front[eyes].min(axis=-1) < 120).sum() >= 4  # dark irises on the front
    assert (back[eyes].min(axis=-1) < 120).sum() == 0  # plain back of the head


def test_sizes_are_checked(body, renderer) -> None:
    with pytest.raises(RenderSizeError, match="2x96 px is out of range"):
        renderer.pose_map(body.rest(), 0.0, (2, 96))


def test_glb_export(body, tmp_path) -> None:
    import trimesh

    mesh = body.rest()
    data = export_glb(mesh, tmp_path / "pose.glb")
    assert data[:4] == b"glTF" and (tmp_path / "pose.glb").read_bytes() == data
    loaded = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh", process=False)
    assert len(loaded.vertices) == len(mesh.vertices)
    colours = {tuple(c[:3]) for c in loaded.visual.vertex_colors}
    assert colours == {tuple(c) for c in PALETTE}


def test_closing_one_renderer_leaves_the_others_working(body):
    """pyrender's own teardown terminates the process-wide EGL display; ours must not."""
    import gc

    mesh = body.posed(Pose(np.zeros(3), np.zeros((21, 3))))
    first, second = PoseRenderer(), PoseRenderer()
    expected = second.pose_map(mesh, 0.0, SIZE_HW)
    first.pose_map(mesh, 0.0, SIZE_HW)
    first.close()
    del first
    gc.collect()
    assert np.array_equal(second.pose_map(mesh, 0.0, SIZE_HW), expected)
    second.close()
    with PoseRenderer() as third:  # and a new one still starts after every other closed
        assert np.array_equal(third.pose_map(mesh, 0.0, SIZE_HW), expected)


@pytest.fixture(scope="module")
def lowpoly(body):
    return LowPolyBody(body)


def test_surface_map_carries_rest_body_coordinates(lowpoly, renderer) -> None:
    """Each body pixel shows where on the rest body it lies: left-right in red, height in green."""
    mesh = lowpoly.posed(Pose.zero())
    surface = renderer.surface_map(mesh, 0.0, SIZE_HW)
    parts = renderer.pose_map(mesh, 0.0, SIZE_HW)
    assert surface.shape == (*SIZE_HW, 3) and surface.dtype == np.uint8
    inside = parts.any(axis=-1)
    drawn = surface.any(axis=-1)
    assert (drawn & inside).sum() > 0.97 * inside.sum()  # the same silhouette as the part map
    ys, xs = np.nonzero(inside & drawn)
    red, green = surface[ys, xs, 0].astype(float), surface[ys, xs, 1].astype(float)
    # Facing the camera the body's left (+x, high red) is on the image right; height grows upwards.
    assert np.corrcoef(xs, red)[0, 1] > 0.85
    assert np.corrcoef(-ys, green)[0, 1] > 0.85
    # Seen from behind, left and right swap on the image but not on the body.
    back = renderer.surface_map(mesh, 180.0, SIZE_HW)
    half = SIZE_HW[1] // 2
    left_half, right_half = back[:, :half, 0][back[:, :half].any(-1)], back[:, half:, 0][back[:, half:].any(-1)]
    assert left_half.mean() > right_half.mean() + 30


def test_surface_map_follows_the_body_not_the_image(lowpoly, renderer) -> None:
    """A raised arm moves in the image, but its pixels keep the arm's surface colours."""
    down = renderer.surface_map(lowpoly.posed(set_joint(Pose.zero(), "left_shoulder", (0, 0, -70))), 0.0, SIZE_HW)
    hand_colour = down[down[..., 0] > 240]  # the far end of the left arm (red near 255)
    assert len(hand_colour) > 0
    rest = renderer.surface_map(lowpoly.posed(Pose.zero()), 0.0, SIZE_HW)
    rows_down = np.nonzero((down[..., 0] > 240).any(axis=1))[0]
    rows_rest = np.nonzero((rest[..., 0] > 240).any(axis=1))[0]
    assert rows_down.mean() > rows_rest.mean() + 10  # the lowered hand sits lower in the image


def test_pose_condition_renders_the_named_kind(lowpoly, renderer) -> None:
    mesh = lowpoly.posed(Pose.zero())
    np.testing.assert_array_equal(
        pose_condition(renderer, mesh, 30.0, SIZE_HW, "parts"), renderer.pose_map(mesh, 30.0, SIZE_HW)
    )
    np.testing.assert_array_equal(
        pose_condition(renderer, mesh, 30.0, SIZE_HW, "surface"), renderer.surface_map(mesh, 30.0, SIZE_HW)
    )
    assert (sample_key("parts"), sample_key("surface", "reference")) == ("pose", "surface_ref")
    with pytest.raises(ValueError, match="unknown pose condition 'depth'; choose one of parts, surface"):
        pose_condition(renderer, mesh, 0.0, SIZE_HW, "depth")
    with pytest.raises(ValueError, match="no surface coordinates"):
        renderer.surface_map(lowpoly.body.posed(Pose.zero()), 0.0, SIZE_HW)
