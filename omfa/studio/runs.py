"""The studio's runs as generators of screen updates: try-on, try-off, outfit, pose gallery.

Each run prepares its uploads, renders the target pose, plans the pipeline's
stages (`omfa.pipeline.try_on_stages`, `multiview_stages`), then streams
every denoising step's Tweedie x0 estimate (the pipeline's `Preview`) as a
`Frame`: the images to show so far, a status line "step k/N" and the
fraction of the run done, and notes for the user when an upload is outside what the
loaded model was trained on (`input_notes`). A dressed person given as a garment source goes
through try-off first; the extracted garment is shown while it forms and is
then worn. Images are at the model's canvas size. Nothing here knows Gradio:
`omfa.app.blocks` maps frames onto widgets (enlarged for the screen) and
`omfa.studio.cli` saves them; closing a run's generator stops it within one
denoising step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omfa.imaging import PreparedPortrait
from omfa.pipeline import Preview, Stage, multiview_stages, try_on_stages
from omfa.pose.body import Pose
from omfa.studio.context import StudioContext
from omfa.studio.settings import RunSettings

# Where the target pose of a try-on comes from (value -> label).
POSE_SOURCES: dict[str, str] = {
    "portrait": "Keep the portrait's pose",
    "preset": "A preset",
    "studio": "The Pose Studio's pose",
}
GARMENT_SLOTS: dict[str, str] = {"upper": "Top", "lower": "Bottom", "both": "Both (from a dressed person)"}
GALLERY_TURNS: tuple[int, ...] = (0, 45, 90, 135, 180, -135, -90, -45)
MAX_VIEWS = 12
# The status label of each stage of a try-on (`Stage.name`).
STAGE_LABELS: dict[str, str] = {"try_off": "Extracting the garment (try-off)", "try_on": "Try-on"}


# What a model trained on renders makes of a real photo in try-off (see `input_notes`).
TRY_OFF_EXPECT = "shop images in the garments' main colours and a generic cut, not their details or prints"


class RunInputError(ValueError):
    """A combination of inputs that a run cannot use; the message is meant for the user."""


def sentence(error: BaseException) -> str:
    """An error message as a sentence for the screen: first letter upper case."""
    text = str(error).strip() or type(error).__name__
    return text[0].upper() + text[1:]


def shown_as(slot: str) -> str:
    """The output name of a target slot's images: the generated person is the "result"."""
    return "result" if slot == "person" else slot


@dataclass(frozen=True, eq=False)
class PoseState:
    """The pose being edited in the Pose Studio (one per session; the app keeps it in a gr.State).

    yaw_deg: the view around the body (0 faces the camera, 90 shows its left side).
    """

    pose: Pose
    yaw_deg: float = 0.0
    name: str = ""


@dataclass(frozen=True)
class Frame:
    """One screen update of a run.

    images: output name -> (H, W, 3) uint8 at the model's canvas size; names are "result",
    "reference" (the portrait as the model sees it), "upper", "lower" (garments
    worn, extracted or taken off) and "pose" (the target pose map).
    gallery: the views of a pose gallery so far, (image, caption) in view order: the finished
        ones and those of the batch being sampled, as they form.
    notes: sentences for the user about the inputs (outside the model's training data, a
        body part not in the photo), shown next to the result.
    """

    status: str
    progress: float
    images: Mapping[str, np.ndarray]
    gallery: tuple[tuple[np.ndarray, str], ...] = ()
    done: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PoseChoice:
    """The target pose of a try-on: `source` is a key of POSE_SOURCES; `turn_deg` turns the view."""

    source: str = "preset"
    preset: str = "a_pose"
    turn_deg: float = 0.0
    studio: PoseState | None = None

    def __post_init__(self) -> None:
        if self.source not in POSE_SOURCES:
            raise RunInputError(f"pose source is {self.source!r}; choose one of {', '.join(POSE_SOURCES)}")


@dataclass
class _Run:
    """Bookkeeping of one run: images shown so far and denoising steps done of the total."""

    total_steps: int
    images: dict[str, np.ndarray] = field(default_factory=dict)
    steps_done: int = 0
    started: float = field(default_factory=time.perf_counter)
    notes: list[str] = field(default_factory=list)

    def frame(self, status: str, *, gallery: Sequence[tuple[np.ndarray, str]] = (), done: bool = False) -> Frame:
        progress = 1.0 if done else min(self.steps_done / max(self.total_steps, 1), 1.0)
        return Frame(status, progress, dict(self.images), tuple(gallery), done, tuple(self.notes))

    def finish(self, what: str, gallery: Sequence[tuple[np.ndarray, str]] = ()) -> Frame:
        return self.frame(f"{what} done in {time.perf_counter() - self.started:.1f} s", gallery=gallery, done=True)


def _play(run: _Run, labels: Sequence[str], steps: Iterator[Preview]) -> Iterator[Frame]:
    """Show every sampled step: its images, the status "<label of its stage>: step k/N"."""
    try:
        for step in steps:
            run.images.update({shown_as(slot): image for slot, image in step.images.items()})
            run.steps_done += 1
            yield run.frame(f"{labels[step.stage_index]}: step {step.step + 1}/{step.num_steps}")
    finally:
        steps.close()  # a stopped run stops sampling (also when sampling runs in a GPU worker)


def input_notes(
    ctx: StudioContext,
    person: PreparedPortrait,
    what: str,
    *,
    whole_body: bool,
    expect: str = "the garments' main colours on a generic figure, not this person's face or the garments' details",
) -> list[str]:
    """What the user should know about a prepared photo before trusting the result.

    A real photo given to a model whose card says it was trained on renders, and (when the
    target pose shows the whole body) a photo that shows only part of it: the model then
    invents what it has not seen. `what` names the upload ("portrait", "garment photo"), `expect`
    says what such a model makes of a real photo.
    """
    notes = []
    card = ctx.card
    if card is not None and card.trained_on_renders and person.photo:
        trained_on = card.training_description or "rendered people, not photographs"
        notes.append(
            f"The {what} looks like a real photograph (a face or a real background was found), but the "
            f"loaded model was trained only on {trained_on}. Expect {expect}. For results that keep the "
            "person, start the app with a checkpoint trained on photos: `python app.py --model DIR`."
        )
    if whole_body and not person.full_body:
        notes.append(
            f"The {what} {_shows(person)}; the target pose shows the whole body, so the model invents "
            "the rest. Upload a full-body photo (head to feet) for a better result."
        )
    return notes


def _shows(person: PreparedPortrait) -> str:
    """How much of the person a photo shows, for a note: "shows the person only down to the hips"."""
    if person.visible_to in ("ankles", "feet"):  # feet found, but the body runs off the photo's lower edge
        return "shows the person cut off at the photo's lower edge"
    return f"shows the person only down to the {person.visible_to}"


def check_lower_visible(person: PreparedPortrait, which: str, what: str) -> list[str]:
    """Refuse to take off a bottom the photo does not show; for both garments, a note that the
    bottom is a guess. `which` is "upper", "lower" or "both"."""
    if which == "upper" or person.lower_body_visible:
        return []
    seen = f"the {what} {_shows(person)}"
    if which == "lower":
        raise RunInputError(
            f"{seen}, so the bottom is not visible and would be invented; upload a photo down to at least "
            "the knees, or take off the top"
        )
    return [f"The bottom is the model's guess, not the person's garment: {seen}."]


def target_pose(ctx: StudioContext, choice: PoseChoice, portrait: Any) -> tuple[Pose, float, str]:
    """(pose, view yaw in degrees, a description) for a try-on's target."""
    if choice.source == "portrait":
        return ctx.photo_pose(portrait), choice.turn_deg, "the portrait's pose"
    if choice.source == "studio":
        if choice.studio is None:
            raise RunInputError("no Pose Studio pose yet; open the Pose Studio tab and pick or edit a pose")
        state = choice.studio
        return state.pose, state.yaw_deg + choice.turn_deg, f"the Pose Studio's pose ({state.name or 'edited'})"
    preset = ctx.preset(choice.preset)
    return preset.pose, preset.yaw_deg + choice.turn_deg, f"the preset '{preset.label}'"


def stream_try_on(
    ctx: StudioContext, portrait: Any, sources: Sequence[tuple[Any, str]], choice: PoseChoice, settings: RunSettings
) -> Iterator[Frame]:
    """The portrait's person wearing garments from `sources`, in the chosen pose.

    sources: (garment photo, what to take) pairs; what to take is "upper",
    "lower", or "both" (a dressed person's whole outfit). A flat garment is worn
    as it is; a dressed person's garment is extracted by try-off first.
    """
    run = _Run(settings.steps)
    yield run.frame("Preparing the portrait and the garments...")
    prepared = ctx.portrait(portrait)
    run.images["reference"] = prepared.image
    run.notes.extend(input_notes(ctx, prepared, "portrait", whole_body=True))
    worn: dict[str, np.ndarray] = {}
    take_off: list[tuple[np.ndarray, str]] = []
    claimed: set[str] = set()
    for source, which in sources:
        if which not in GARMENT_SLOTS:
            raise RunInputError(f"garment part is {which!r}; choose one of {', '.join(GARMENT_SLOTS)}")
        slots = ("upper", "lower") if which == "both" else (which,)
        if claimed & set(slots):
            raise RunInputError(
                f"two garments were given for the {min(claimed & set(slots))}; give one top and one bottom"
            )
        claimed.update(slots)
        garment = ctx.garment(source)
        if garment.kind == "flat":
            if which == "both":
                raise RunInputError(
                    "a flat garment photo shows one garment; choose 'Top' or 'Bottom' "
                    "(or use the Outfit tab for a top and a bottom)"
                )
            worn[which] = garment.image
            run.images[which] = garment.image
        else:  # a dressed person: the pipeline takes the garment off first, then it is worn
            run.notes.extend(check_lower_visible(garment.portrait, which, "garment photo"))
            run.notes.extend(input_notes(ctx, garment.portrait, "garment photo", whole_body=False))
            take_off.append((garment.image, which))
    if not claimed:
        raise RunInputError("no garment given; upload a garment photo or a photo of a person wearing it")
    pose, yaw, described = target_pose(ctx, choice, portrait)
    pose_map = ctx.pose_map(pose, yaw)
    run.images["pose"] = pose_map
    stages = try_on_stages(prepared.image, pose_map, **worn, take_off=take_off)
    run.total_steps = settings.steps * len(stages)
    yield run.frame(f"Ready: {described}, view {yaw:g} degrees")
    yield from _play(run, [STAGE_LABELS[stage.name] for stage in stages], ctx.sample(stages, settings))
    yield run.finish("Try-on")


def stream_try_off(ctx: StudioContext, dressed: Any, which: str, settings: RunSettings) -> Iterator[Frame]:
    """The flat shop image(s) of what the person in `dressed` wears: `which` is upper, lower or both."""
    task = ctx.pipe.try_off_task(which)
    run = _Run(settings.steps)
    yield run.frame("Preparing the photo...")
    person = ctx.portrait(dressed, "photo")  # "no person found in the photo": what was found, not a guess
    run.notes.extend(check_lower_visible(person, which, "photo"))
    run.notes.extend(input_notes(ctx, person, "photo", whole_body=False, expect=TRY_OFF_EXPECT))
    run.images["reference"] = person.image
    stages = [Stage(task, {"reference": person.image}, "try_off")]
    yield from _play(run, ["Try-off"], ctx.sample(stages, settings))
    yield run.finish("Try-off")


def gallery_views(ctx: StudioContext, presets: Sequence[str], turns: Sequence[float]) -> list[tuple[str, float]]:
    """Every (preset, turn) pair to render, checked: at least one, at most MAX_VIEWS."""
    if not presets:
        raise RunInputError("no pose picked; tick at least one pose for the gallery")
    if not turns:
        raise RunInputError("no view picked; tick at least one turn (0 is each pose's own view)")
    for name in presets:
        ctx.preset(name)
    views = [(name, float(turn)) for name in presets for turn in turns]
    if len(views) > MAX_VIEWS:
        raise RunInputError(
            f"{len(presets)} poses x {len(turns)} turns make {len(views)} views; "
            f"pick at most {MAX_VIEWS} (fewer poses or turns)"
        )
    return views


def stream_gallery(
    ctx: StudioContext, portrait: Any, presets: Sequence[str], turns: Sequence[float], settings: RunSettings
) -> Iterator[Frame]:
    """The portrait's person, same outfit, in every picked pose and turn; views appear as they form.

    View k is seeded `settings.seed + k` (as `OMFAPipeline.multiview` does), so
    a view does not change when others are added after it. Up to
    `settings.view_batch` views are sampled together; after every step the
    gallery shows each view of the batch as it forms, next to the views
    finished before it, in view order.
    """
    views = gallery_views(ctx, presets, turns)
    run = _Run(settings.steps * len(views))
    yield run.frame("Preparing the portrait...")
    prepared = ctx.portrait(portrait)
    run.images["reference"] = prepared.image
    run.notes.extend(input_notes(ctx, prepared, "portrait", whole_body=True))
    maps, captions = [], []
    for name, turn in views:
        preset = ctx.preset(name)
        maps.append(ctx.pose_map(preset.pose, preset.yaw_deg + turn))
        captions.append(f"{preset.label}, turn {turn:g}")
    stages = multiview_stages(prepared.image, maps, seed=settings.seed)
    shown: dict[int, np.ndarray] = {}  # view -> its latest image (final once it is done)
    steps = ctx.sample(stages, settings)
    try:
        for step in steps:
            if "person" in step.images:  # a latent model may decode only every k-th step's preview
                shown[step.view] = step.images["person"]
            run.steps_done += 1
            if step.view != step.batch[-1]:
                continue  # one frame per step of a batch, once every view of it has that step
            first, last = step.batch[0], step.batch[-1]
            run.images["result"], run.images["pose"] = shown[first], maps[first]
            if first == last:
                label = f"View {first + 1}/{len(views)} ({captions[first]})"
            else:
                label = f"Views {first + 1}-{last + 1} of {len(views)}"
            gallery = [(shown[k], captions[k]) for k in sorted(shown)]
            yield run.frame(f"{label}: step {step.step + 1}/{step.num_steps}", gallery=gallery)
    finally:
        steps.close()
    yield run.finish(f"{len(views)} views", [(shown[k], captions[k]) for k in sorted(shown)])
