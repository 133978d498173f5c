"""The studio's runs without a server: frames, equality with the pipeline, input errors, shared resources."""

from __future__ import annotations

import inspect
import shutil
import threading

import numpy as np
import pytest
import torch
from engine_helpers import tiny_kl, tiny_model

from omfa.app.blocks import stopped, stream_frames
from omfa.app.files import AppFiles
from omfa.diffusion import make_scheduler
from omfa.imaging import ImageInputError
from omfa.pipeline import OMFAPipeline
from omfa.pose.body import Pose
from omfa.pose.presets import get_preset
from omfa.studio.card import ModelCard, ModelCardError
from omfa.studio.context import EXAMPLES_DIR, StudioContext
from omfa.studio.runs import (
    MAX_VIEWS,
    PoseChoice,
    PoseState,
    RunInputError,
    gallery_views,
    stream_gallery,
    stream_try_off,
    stream_try_on,
    target_pose,
)
from omfa.studio.settings import RunSettings, SettingsError

PORTRAIT, TOP, BOTTOM, DRESSED, ASTRONAUT = (
    str(EXAMPLES_DIR / name) for name in ("portrait.png", "top.png", "bottom.png", "dressed.png", "astronaut.png")
)
RENDERS_CARD = """---
training_data:
  kind: renders
  description: rendered mannequins only
---
# A card
"""


@pytest.fixture(scope="module")
def ctx():
    pipe = OMFAPipeline(tiny_model(0, sample_size=(128, 96)), make_scheduler(RunSettings.scheduler))
    context = StudioContext(pipe)
    yield context
    context.close()


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def step_statuses(frames, label: str) -> list[str]:
    return [f.status for f in frames if f.status.startswith(f"{label}: step")]


def test_run_settings_from_widgets_and_their_errors():
    assert RunSettings.from_ui(12.0, 3.5, 7.0, "euler") == RunSettings(12, 3.5, 7, "euler")
    assert RunSettings.from_ui(None, None, None, None) == RunSettings()
    with pytest.raises(SettingsError, match="steps is 0; pick a whole number from 1 to 100"):
        RunSettings.from_ui(0, 2.0, 0, "ddim")
    with pytest.raises(SettingsError, match="seed is 1.5; pick a whole number"):
        RunSettings.from_ui(20, 2.0, 1.5, "ddim")
    with pytest.raises(SettingsError, match="choose one of ddim, dpm\\+\\+, euler"):
        RunSettings.from_ui(20, 2.0, 0, "heun")
    with pytest.raises(SettingsError, match="guidance is nan"):
        RunSettings.from_ui(20, float("nan"), 0, "ddim")


def test_try_on_streams_every_step_and_equals_the_pipeline(ctx):
    frames = list(
        stream_try_on(ctx, PORTRAIT, [(TOP, "upper")], PoseChoice("preset", "walking"), RunSettings(steps=4, seed=3))
    )
    assert step_statuses(frames, "Try-on") == [f"Try-on: step {k}/4" for k in range(1, 5)]
    assert frames[-1].done and frames[-1].progress == 1.0 and frames[-1].status.startswith("Try-on done in")
    progress = [f.progress for f in frames]
    assert progress == sorted(progress)
    steps = [f for f in frames if "step" in f.status]
    assert not np.array_equal(steps[0].images["result"], steps[-1].images["result"])  # the preview evolves
    np.testing.assert_array_equal(frames[-1].images["result"], steps[-1].images["result"])
    assert frames[-1].images["result"].shape == (128, 96, 3)  # the model's own size; the page enlarges it

    # The same request straight through the pipeline gives the same pixels.
    walking = get_preset("walking")
    pose_map = ctx.pose_map(walking.pose, walking.yaw_deg)
    out = ctx.pipe(
        "try_on_upper",
        reference=ctx.portrait(PORTRAIT).image,
        upper=ctx.garment(TOP).image,
        pose=pose_map,
        num_inference_steps=4,
        scheduler=RunSettings.scheduler,
        generator=seeded(3),
    )
    np.testing.assert_array_equal(frames[-1].images["result"], np.asarray(out.images["person"]))
    np.testing.assert_array_equal(frames[-1].images["pose"], pose_map)


def test_transfer_from_a_dressed_person_equals_the_pipeline_transfer(ctx):
    frames = list(
        stream_try_on(ctx, PORTRAIT, [(DRESSED, "upper")], PoseChoice("preset", "a_pose"), RunSettings(steps=3, seed=5))
    )
    assert step_statuses(frames, "Extracting the garment (try-off)") == [
        f"Extracting the garment (try-off): step {k}/3" for k in range(1, 4)
    ]
    assert step_statuses(frames, "Try-on") == [f"Try-on: step {k}/3" for k in range(1, 4)]
    assert "upper" in frames[-1].images and "lower" not in frames[-1].images
    assert ctx.garment(DRESSED).kind == "person"

    a_pose = get_preset("a_pose")
    out = ctx.pipe.transfer(
        ctx.garment(DRESSED).image,
        ctx.portrait(PORTRAIT).image,
        ctx.pose_map(a_pose.pose, a_pose.yaw_deg),
        "upper",
        num_inference_steps=3,
        generator=seeded(5),
    )
    np.testing.assert_array_equal(frames[-1].images["result"], np.asarray(out.images["person"]))
    np.testing.assert_array_equal(frames[-1].images["upper"], np.asarray(out.extra["garments"]["upper"]))


def test_pipeline_transfer_and_multiview_give_the_studio_runs_pixels(ctx):
    # A dressed person's whole outfit: two garments carried into the try-on, one generator for both stages.
    settings = RunSettings(steps=2, guidance=3.0, seed=9, scheduler="euler")
    frames = list(stream_try_on(ctx, PORTRAIT, [(DRESSED, "both")], PoseChoice("preset", "walking", 30.0), settings))
    walking = get_preset("walking")
    out = ctx.pipe.transfer(
        ctx.garment(DRESSED).image,
        ctx.portrait(PORTRAIT).image,
        ctx.pose_map(walking.pose, walking.yaw_deg + 30.0),
        "both",
        num_inference_steps=2,
        guidance_scale=3.0,
        scheduler="euler",
        generator=seeded(9),
    )
    assert out.task == "outfit"
    shown = {"result": out.images["person"], **out.extra["garments"]}
    assert set(shown) == {"result", "upper", "lower"}
    for name, image in shown.items():
        np.testing.assert_array_equal(frames[-1].images[name], np.asarray(image), err_msg=name)

    # Every view of a gallery is the pipeline's multiview of the same pose maps (view k seeded seed + k).
    frames = list(stream_gallery(ctx, PORTRAIT, ["walking", "t_pose"], [0, -45], RunSettings(steps=2, seed=2)))
    maps = [
        ctx.pose_map(get_preset(name).pose, get_preset(name).yaw_deg + turn)
        for name in ("walking", "t_pose")
        for turn in (0, -45)
    ]
    views = ctx.pipe.multiview(ctx.portrait(PORTRAIT).image, maps, seed=2, num_inference_steps=2)
    assert len(frames[-1].gallery) == len(views) == 4
    for (image, caption), view in zip(frames[-1].gallery, views, strict=True):
        np.testing.assert_array_equal(image, np.asarray(view.images["person"]), err_msg=caption)


def test_garment_choices_that_cannot_work_say_why(ctx):
    with pytest.raises(RunInputError, match="a flat garment photo shows one garment"):
        list(stream_try_on(ctx, PORTRAIT, [(TOP, "both")], PoseChoice(), RunSettings(steps=1)))
    with pytest.raises(RunInputError, match="two garments were given for the upper"):
        list(stream_try_on(ctx, PORTRAIT, [(TOP, "upper"), (DRESSED, "both")], PoseChoice(), RunSettings(steps=1)))
    with pytest.raises(ImageInputError, match="no garment photo given"):
        list(stream_try_on(ctx, PORTRAIT, [(None, "upper")], PoseChoice(), RunSettings(steps=1)))
    with pytest.raises(ImageInputError, match="no person found in the portrait"):
        list(stream_try_on(ctx, TOP, [(TOP, "upper")], PoseChoice(), RunSettings(steps=1)))
    with pytest.raises(ImageInputError, match="no person found in the photo"):
        list(stream_try_off(ctx, TOP, "upper", RunSettings(steps=1)))


def test_try_off_of_both_garments(ctx):
    frames = list(stream_try_off(ctx, DRESSED, "both", RunSettings(steps=2, seed=1)))
    assert step_statuses(frames, "Try-off") == ["Try-off: step 1/2", "Try-off: step 2/2"]
    last = frames[-1].images
    assert last["upper"].shape == last["lower"].shape == (128, 96, 3)
    out = ctx.pipe.try_off(ctx.garment(DRESSED).image, "both", num_inference_steps=2, generator=seeded(1))
    np.testing.assert_array_equal(last["lower"], np.asarray(out.images["lower"]))


def test_pose_gallery_shows_each_batch_of_views_as_it_forms(ctx):
    settings = RunSettings(steps=2, seed=4, view_batch=3)
    frames = list(stream_gallery(ctx, PORTRAIT, ["a_pose", "side_view"], [0, 90], settings))
    steps = [f for f in frames if ": step " in f.status]
    # one frame per step of a batch: views 1-3 form together, then view 4 joins them
    assert [f.status for f in steps] == [
        "Views 1-3 of 4: step 1/2",
        "Views 1-3 of 4: step 2/2",
        "View 4/4 (Side view, turn 90): step 1/2",
        "View 4/4 (Side view, turn 90): step 2/2",
    ]
    assert [len(f.gallery) for f in steps] == [3, 3, 4, 4]
    assert [f.progress for f in steps] == [0.375, 0.75, 0.875, 1.0]
    # the finished views stay as they were
    for image, final in zip(steps[2].gallery[:3], steps[-1].gallery[:3], strict=True):
        np.testing.assert_array_equal(image[0], final[0])
    assert [caption for _, caption in frames[-1].gallery] == [
        "A-pose, turn 0",
        "A-pose, turn 90",
        "Side view, turn 0",
        "Side view, turn 90",
    ]
    # View 3 (side view turned 90: its own yaw 90 + 90) is seeded 4 + 3, like the pipeline's multiview.
    side = get_preset("side_view")
    views = ctx.pipe.multiview(
        ctx.portrait(PORTRAIT).image, [ctx.pose_map(side.pose, 180.0)], seed=7, num_inference_steps=2
    )
    np.testing.assert_array_equal(frames[-1].gallery[3][0], np.asarray(views[0].images["person"]))
    # View 1 formed in a batch of three: the view alone agrees to float rounding (one uint8 level)
    alone = ctx.pipe.multiview(
        ctx.portrait(PORTRAIT).image, [ctx.pose_map(get_preset("a_pose").pose, 90.0)], seed=5, num_inference_steps=2
    )
    diff = frames[-1].gallery[1][0].astype(int) - np.asarray(alone[0].images["person"])
    assert np.abs(diff).max() <= 1


def test_gallery_view_limits(ctx):
    assert gallery_views(ctx, ["a_pose"], [0, 180]) == [("a_pose", 0.0), ("a_pose", 180.0)]
    with pytest.raises(RunInputError, match="no pose picked"):
        gallery_views(ctx, [], [0])
    with pytest.raises(RunInputError, match="no view picked"):
        gallery_views(ctx, ["a_pose"], [])
    with pytest.raises(RunInputError, match=f"make 16 views; pick at most {MAX_VIEWS}"):
        gallery_views(ctx, ["a_pose", "walking"], [0, 45, 90, 135, 180, -135, -90, -45])
    with pytest.raises(ValueError, match="unknown pose preset 'moonwalk'"):
        gallery_views(ctx, ["moonwalk"], [0])


def test_target_pose_sources(ctx):
    walking = get_preset("walking")
    pose, yaw, _ = target_pose(ctx, PoseChoice("preset", "walking", 15.0), PORTRAIT)
    assert pose is walking.pose and yaw == walking.yaw_deg + 15.0
    studio = PoseState(walking.pose, -30.0, "walking")
    assert target_pose(ctx, PoseChoice("studio", turn_deg=10.0, studio=studio), PORTRAIT)[1] == -20.0
    with pytest.raises(RunInputError, match="open the Pose Studio tab"):
        target_pose(ctx, PoseChoice("studio"), PORTRAIT)
    with pytest.raises(RunInputError, match="choose one of portrait, preset, studio"):
        PoseChoice("photo")
    # The example portrait raises both arms: its estimated pose has both wrists above the head.
    pose, yaw, _ = target_pose(ctx, PoseChoice("portrait"), PORTRAIT)
    joints = ctx.body.posed(pose).joints
    head, wrists = joints[15], joints[[20, 21]]
    assert yaw == 0.0 and (wrists[:, 1] > head[1]).all()


def test_uploads_are_prepared_once_per_content(ctx, tmp_path):
    copy = tmp_path / "same_bytes.png"
    shutil.copy(PORTRAIT, copy)
    assert ctx.portrait(str(copy)) is ctx.portrait(PORTRAIT)
    assert ctx.portrait(str(copy)).image.shape == (128, 96, 3)


def test_renders_from_many_threads_agree(ctx):
    # Gradio runs handlers on worker threads; an EGL context made current on one thread fails on another.
    # Each thread asks for a view no one rendered yet, so every thread really renders.
    preset = get_preset("waving")
    yaws = [31.0, 32.0, 33.0, 34.0]
    results: dict[float, np.ndarray] = {}
    threads = [threading.Thread(target=lambda y=y: results.update({y: ctx.pose_map(preset.pose, y)})) for y in yaws]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    posed = ctx.mesh_body.posed(preset.pose)
    for yaw in yaws:
        expected = ctx.renderer.pose_condition(posed, yaw, ctx.canvas_hw, ctx.pose_kind)
        np.testing.assert_array_equal(results[yaw], expected)
        assert set(map(tuple, expected.reshape(-1, 3))) > {(0, 0, 0)}  # a figure on black


def test_pose_maps_are_rendered_once_per_pose_and_view(ctx):
    preset = get_preset("walking")
    first = ctx.pose_map(preset.pose, 12.5)
    assert ctx.pose_map(preset.pose, 12.5) is first  # a repeated preset or gallery turn costs nothing
    assert not first.flags.writeable  # shared between requests: nobody may paint on it
    turned = ctx.pose_map(preset.pose, 13.5)
    assert turned is not first and not np.array_equal(turned, first)
    bent = preset.pose.body_pose.copy()
    bent[17] = (0.0, -1.2, 0.0)  # the left elbow: another pose, another map
    assert not np.array_equal(ctx.pose_map(Pose(preset.pose.global_orient, bent), 12.5), first)


def test_stop_closes_the_run_within_one_step(ctx):
    # The Stop button closes the handler's generator; the run and its sampler must close with it.
    run = stream_try_on(ctx, PORTRAIT, [(TOP, "upper")], PoseChoice(), RunSettings(steps=50))
    outputs = stream_frames(lambda: run, ("result",), AppFiles(), lambda *args, **kwargs: None)
    statuses = [next(outputs)[-1] for _ in range(4)]
    assert statuses[-1] == "Try-on: step 2/50"
    outputs.close()
    assert inspect.getgeneratorstate(run) == inspect.GEN_CLOSED


def test_notices_come_from_what_the_models_card_says(ctx):
    def notes(card: ModelCard | None, portrait: str) -> tuple[str, ...]:
        ctx.card = card
        try:
            return list(stream_try_on(ctx, portrait, [(TOP, "upper")], PoseChoice(), RunSettings(steps=1)))[-1].notes
        finally:
            ctx.card = None

    renders = ModelCard.parse(RENDERS_CARD)
    assert renders.markdown == "# A card" and renders.trained_on_renders
    real, bust = notes(renders, ASTRONAUT)
    assert "real photograph" in real and "trained only on rendered mannequins only" in real and "--model" in real
    assert "only down to the shoulders" in bust and "full-body photo" in bust
    # A model trained on photos, or a card that says nothing: no claim about real photos.
    photos = ModelCard.parse(RENDERS_CARD.replace("renders", "photos"))
    assert [n for n in notes(photos, ASTRONAUT) if "real photograph" in n] == []
    assert [n for n in notes(None, ASTRONAUT) if "real photograph" in n] == []
    assert notes(renders, PORTRAIT) == ()  # a render of the fitting room, head to feet
    with pytest.raises(ModelCardError, match="training_data.kind is 'video'; use one of renders, photos"):
        ModelCard.parse(RENDERS_CARD.replace("renders", "video"))


def test_photos_without_a_garment_are_refused_as_garments(ctx):
    """A garment photo needs a person wearing it or one object on a plain background: scikit-image's
    public-domain cat, coffee cup and rocket launch are refused; the shipped garments are accepted."""
    data = pytest.importorskip("skimage.data")
    for name in ("chelsea", "coffee", "rocket"):
        with pytest.raises(ImageInputError, match="it shows no person, and no single object on a plain background"):
            ctx.garment(getattr(data, name)())
    assert ctx.garment(TOP).kind == ctx.garment(BOTTOM).kind == "flat"
    assert ctx.garment(data.astronaut()).kind == "person"


def test_try_off_of_a_bottom_the_photo_does_not_show(ctx):
    with pytest.raises(RunInputError, match="only down to the shoulders, so the bottom is not visible"):
        list(stream_try_off(ctx, ASTRONAUT, "lower", RunSettings(steps=1)))
    with pytest.raises(RunInputError, match="only down to the shoulders, so the bottom is not visible"):
        list(stream_try_on(ctx, PORTRAIT, [(ASTRONAUT, "lower")], PoseChoice(), RunSettings(steps=1)))
    (note,) = list(stream_try_off(ctx, ASTRONAUT, "both", RunSettings(steps=1)))[-1].notes
    assert note.startswith("The bottom is the model's guess")
    assert list(stream_try_off(ctx, DRESSED, "lower", RunSettings(steps=1)))[-1].notes == ()


def test_what_stop_says():
    status, note = stopped("Try-on: step 33/100", "**Note:** a real photo.")
    assert status == "Stopped at step 33 of 100"
    assert note.startswith("**Stopped:** the image shown is the preview at step 33 of 100") and "a real photo" in note
    assert (
        stopped("View 2/4 (A-pose, turn 0): step 3/10", "")[0] == "Stopped at step 3 of 10 (View 2/4 (A-pose, turn 0))"
    )
    assert stopped("Preparing the portrait and the garments...", "") == ("Stopped before the first step", "")
    assert stopped("Try-on done in 1.2 s", "") == ("Try-on done in 1.2 s", "")  # nothing under way: unchanged


def test_a_latent_model_without_a_cheap_decoder_streams_every_step(ctx):
    """The full VAE decodes every 4th step's preview and the last: the studio shows a frame per step,
    keeping the last decoded image, and its results are the pipeline's."""
    latent = OMFAPipeline(
        tiny_model(1, sample_size=(64, 48), in_channels=4, pose_channels=4),
        make_scheduler(RunSettings.scheduler),
        vae=tiny_kl(),
    )
    studio = StudioContext(latent, body=ctx.body, mediapipe=ctx.mediapipe)
    try:
        settings = RunSettings(steps=5, seed=2, view_batch=2)
        frames = list(stream_gallery(studio, PORTRAIT, ["a_pose", "walking"], [0], settings))
        steps = [f for f in frames if ": step " in f.status]
        assert [f.status for f in steps] == [f"Views 1-2 of 2: step {k}/5" for k in range(1, 6)]
        assert [len(f.gallery) for f in steps] == [2] * 5
        for f in steps[1:4]:  # steps 2 to 4 decode nothing: the step-1 images stay
            for (image, _), (first, _) in zip(f.gallery, steps[0].gallery, strict=True):
                np.testing.assert_array_equal(image, first)
        maps = [studio.pose_map(get_preset(name).pose, get_preset(name).yaw_deg) for name in ("a_pose", "walking")]
        views = latent.multiview(studio.portrait(PORTRAIT).image, maps, seed=2, num_inference_steps=5)
        for (image, caption), view in zip(frames[-1].gallery, views, strict=True):
            assert image.shape == (128, 96, 3)
            assert np.abs(image.astype(int) - np.asarray(view.images["person"])).max() <= 1, caption
    finally:
        studio.close()
