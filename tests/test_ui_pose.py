"""The Pose Studio's edits and its 3-D files, on the real body and renderer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engine_helpers import tiny_model

from omfa.app.files import FIGURE_HW, FileStore
from omfa.app.pose_studio import drag_state, joint_state, photo_state, preset_state, yaw_state
from omfa.diffusion import make_scheduler
from omfa.pipeline import OMFAPipeline
from omfa.pose.body import JOINT_NAMES
from omfa.pose.edit import joint_degrees
from omfa.pose.presets import get_preset
from omfa.pose.render import export_glb, project
from omfa.studio.context import EXAMPLES_DIR, StudioContext


@pytest.fixture(scope="module")
def ctx():
    context = StudioContext(OMFAPipeline(tiny_model(0, sample_size=(128, 96)), make_scheduler("ddim")))
    yield context
    context.close()


def test_preset_state_takes_the_preset_and_its_view(ctx):
    state = preset_state(ctx, "walking")
    assert state.pose is get_preset("walking").pose and state.yaw_deg == 30.0 and state.name == "walking"
    assert yaw_state(state, -90).yaw_deg == -90.0 and yaw_state(state, -90).pose is state.pose


def test_joint_sliders_set_and_clamp(ctx):
    state = preset_state(ctx, "a_pose")
    bent = joint_state(state, "left_knee", (400.0, 0.0, 0.0))  # the knee bends at most 150 degrees
    assert joint_degrees(bent.pose, "left_knee") == pytest.approx((150.0, 0.0, 0.0))
    assert np.array_equal(np.delete(bent.pose.body_pose, 3, axis=0), np.delete(state.pose.body_pose, 3, axis=0))


@pytest.mark.parametrize("yaw", [0.0, 60.0])
def test_dragging_a_hand_puts_it_under_the_click(ctx, yaw):
    state = yaw_state(preset_state(ctx, "relaxed_stand"), yaw)
    wrist = JOINT_NAMES.index("left_wrist")
    start = project(ctx.body.posed(state.pose).joints[[wrist]], yaw, FIGURE_HW)[0, :2]
    target = start + np.array([25.0, -70.0])  # up and outwards, within reach
    moved = drag_state(ctx, state, "left_hand", target)
    end = project(ctx.body.posed(moved.pose).joints[[wrist]], yaw, FIGURE_HW)[0, :2]
    assert np.linalg.norm(end - target) < 2.0, (start, target, end)
    assert moved.yaw_deg == yaw


def test_pose_from_a_photo_follows_the_photo(ctx):
    # The dressed example stands with its arms down (test_ui_runs checks the raised arms of the portrait).
    state = photo_state(ctx, str(EXAMPLES_DIR / "dressed.png"))
    joints = ctx.body.posed(state.pose).joints
    wrists = [JOINT_NAMES.index("left_wrist"), JOINT_NAMES.index("right_wrist")]
    assert (joints[wrists, 1] < joints[JOINT_NAMES.index("pelvis"), 1] + 0.3).all()
    assert state.yaw_deg == 0.0 and state.name == "from a photo"


def test_file_store_names_by_content_and_keeps_the_newest(ctx):
    store = FileStore(".glb", keep=2)
    blobs = [export_glb(ctx.mesh_body.posed(get_preset(name).pose)) for name in ("a_pose", "t_pose", "squat")]
    first = store.write(blobs[0])
    assert store.write(blobs[0]) == first  # same content, same file, not rewritten
    assert Path(first).read_bytes()[:4] == b"glTF"
    paths = [store.write(blob) for blob in blobs[1:]]
    assert sorted(store.folder.glob("*.glb")) == sorted(Path(p) for p in paths)


def test_figure_and_pose_map_sizes(ctx):
    state = preset_state(ctx, "t_pose")
    figure = ctx.figure(state.pose, state.yaw_deg, FIGURE_HW)
    pose_map = ctx.pose_map(state.pose, state.yaw_deg)
    assert figure.shape == (*FIGURE_HW, 3) and pose_map.shape == (128, 96, 3)
    # The T-pose spans most of the frame's width: its arms reach near both edges of the pose map.
    columns = np.flatnonzero(pose_map.any(axis=(0, 2)))
    assert columns.min() < 15 and columns.max() > 80
