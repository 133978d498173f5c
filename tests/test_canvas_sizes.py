"""The canvas size is the model's: tiny checkpoints of other sizes run through the studio and the `omfa` command.

One model per size, each with its own kind of pose condition, so that both
the size and the kind of every prepared input and pose map come from the
loaded checkpoint (`pipe.canvas_hw`, `transformer.config.pose_condition`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engine_helpers import tiny_model
from PIL import Image

from omfa.cli import main
from omfa.diffusion import make_scheduler
from omfa.pipeline import OMFAPipeline
from omfa.pose.condition import pose_condition
from omfa.pose.presets import get_preset
from omfa.studio.context import EXAMPLES_DIR, StudioContext
from omfa.studio.runs import PoseChoice, stream_try_off, stream_try_on
from omfa.studio.settings import RunSettings

PORTRAIT, TOP, DRESSED = (str(EXAMPLES_DIR / name) for name in ("portrait.png", "top.png", "dressed.png"))
# (height, width) -> the model's pose condition; the tiny preset's 8 px patches need multiples of 8.
SIZES = {(64, 48): "parts", (192, 144): "surface"}


@pytest.fixture(scope="module", params=list(SIZES), ids=lambda hw: f"{hw[0]}x{hw[1]}")
def pipe(request) -> OMFAPipeline:
    model = tiny_model(0, sample_size=request.param, pose_condition=SIZES[request.param])
    return OMFAPipeline(model, make_scheduler("ddim"))


@pytest.fixture(scope="module")
def ctx(pipe, body):
    context = StudioContext(pipe, body=body)
    yield context
    context.close()


@pytest.fixture(scope="module")
def checkpoint(pipe, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    pipe.save_pretrained(folder)
    return folder


def test_the_studio_prepares_renders_and_samples_at_the_models_size(ctx, pipe, renderer):
    hw = pipe.canvas_hw
    assert ctx.canvas_hw == hw and ctx.pose_kind == SIZES[hw]
    frames = list(
        stream_try_on(ctx, PORTRAIT, [(TOP, "upper")], PoseChoice("preset", "walking"), RunSettings(steps=2, seed=1))
    )
    assert frames[-1].done
    assert {name: image.shape for name, image in frames[-1].images.items()} == {
        name: (*hw, 3) for name in ("result", "reference", "upper", "pose")
    }
    # The pose map is the model's kind of condition, rendered from the low-poly body at the model's size.
    walking = get_preset("walking")
    expected = pose_condition(renderer, ctx.mesh_body.posed(walking.pose), walking.yaw_deg, hw, SIZES[hw])
    np.testing.assert_array_equal(frames[-1].images["pose"], expected)

    frames = list(stream_try_off(ctx, DRESSED, "both", RunSettings(steps=1)))
    assert frames[-1].images["upper"].shape == frames[-1].images["lower"].shape == (*hw, 3)


def test_the_command_writes_images_of_the_models_size(checkpoint, pipe, tmp_path):
    hw = pipe.canvas_hw
    out = tmp_path / "on.png"
    assert (
        main(
            [
                "tryon",
                "--portrait",
                PORTRAIT,
                "--top",
                TOP,
                "--out",
                str(out),
                "--model",
                str(checkpoint),
                "--steps",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert np.asarray(Image.open(out)).shape == (*hw, 3)
    assert (
        main(
            [
                "tryoff",
                "--photo",
                DRESSED,
                "--which",
                "upper",
                "--out-dir",
                str(tmp_path / "off"),
                "--model",
                str(checkpoint),
                "--steps",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert np.asarray(Image.open(tmp_path / "off" / "upper.png")).shape == (*hw, 3)
