"""The Gradio app: `create_demo(pipe)` builds the Blocks, `app.py` launches them.

Tabs: Try-On, Try-Off, Outfit, Pose Gallery, Pose Studio, About. Every run
streams the Tweedie x0 estimate of each denoising step with a progress bar
and can be stopped; the sampler settings sit in an Advanced accordion; the
examples are the project's own synthetic renders and a public-domain photo.
Each run has an `api_name`, so `gradio_client` users call the same endpoints
(`/try_on`, `/try_off`, `/outfit`, `/pose_gallery`, `/pose_preset`, ...).
Per-user state lives in `gr.State` (the Pose Studio's pose), never in globals.
The runs themselves are the studio's (`omfa.studio.runs`, Gradio-free); this
layer maps their frames onto widgets and enlarges their canvas-size images
for the screen (`omfa.app.files`).

Every state a person can reach says what it is: a notice next to the result
when an input is outside what the loaded model was trained on (its card says
what that is), "Stopped at step k of N" and a result marked as a preview after
Stop, the error in the status line after a failed run, and a check of every
upload as soon as it arrives (`check_upload`), before anyone presses Run.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from omfa.app.checks import checked_upload, notice_text
from omfa.app.errors import user_error
from omfa.app.files import CANVAS_CLASS, CANVAS_CSS, AppFiles, FileStore, release_freed_memory
from omfa.app.pose_studio import DEFAULT_PRESET, build_pose_studio, pose_picker, preset_state
from omfa.app.uploads import ImageUpload
from omfa.diffusion import SCHEDULERS
from omfa.pipeline import OMFAPipeline
from omfa.studio.card import ModelCard
from omfa.studio.context import EXAMPLES_DIR, StudioContext
from omfa.studio.runs import (
    GALLERY_TURNS,
    GARMENT_SLOTS,
    MAX_VIEWS,
    Frame,
    PoseChoice,
    sentence,
    stream_gallery,
    stream_try_off,
    stream_try_on,
)
from omfa.studio.settings import MAX_GUIDANCE, MAX_SEED, MAX_STEPS, TRY_OFF_DEFAULTS, RunSettings

HEADER = """# OMFA Studio
One diffusion model for try-on, try-off, outfits and any pose. Upload a portrait and a garment
(laid flat, or worn by someone else), pick a pose, and watch the model's estimate sharpen step by step."""

# What the app itself expects, whatever the checkpoint; the model's own limits are in its card.
INPUTS = """### What the app expects
- One person per photo, seen from the front from the head to at least the chest; a whole-body
  photo (head to feet) gives the model the most to work with. The background is removed
  automatically (U²-Net small, MediaPipe as a fallback) and may cut off thin parts.
- A garment laid flat or on a hanger against a plain background, or worn by a person.
- Poses come from the SMPL-X body of the mannequin; hands and faces are not modelled.
- Images are generated at the loaded model's canvas size (below) and shown enlarged three times."""

ABOUT = """## About
OMFA Studio implements *One Model For All: Partial Diffusion for Unified Try-On and Try-Off in Any
Pose* (arXiv 2508.04559). The canvas is a set of image slots (person, portrait, top, bottom); a task
says which slots are generated and which are given, and only the generated ones are noised. The
same model therefore does try-on, try-off, outfits, garment transfer (try-off, then try-on) and new
poses and views, conditioned on a pose map rendered from an SMPL-X pose. Each denoising step's
estimate of the clean image (Tweedie's formula) is what you see forming."""


# Canvas images fill their boxes; the notices and upload checks stand out from the labels around them;
# a pose gallery's captions (pose and turn) sit under their views, not over them (passed to launch()).
CSS = (
    CANVAS_CSS
    + """
.omfa-notice:has(p), .omfa-check:has(p) { padding: 4px 8px; border-left: 3px solid #d97706; }
#pose_gallery_views .thumbnail-item { display: flex; flex-direction: column; }
#pose_gallery_views .thumbnail-item img { flex: 1 1 auto; min-height: 0; height: auto; }
#pose_gallery_views .caption-label {
  position: static; flex: none; width: 100%; max-width: 100%; text-align: center;
  border: none; border-top: 1px solid var(--border-color-primary); border-radius: 0;
}
"""
)


def theme() -> gr.themes.Theme:
    """The default theme with the system's fonts: the app works offline, with no font downloads."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "SFMono-Regular", "monospace"]
    )


def examples_path(name: str) -> str:
    """Path of a shipped example image."""
    return str(EXAMPLES_DIR / name)


def advanced_settings(tab: str, defaults: RunSettings = RunSettings()) -> list[gr.components.Component]:
    """Steps, guidance, seed and scheduler in a closed accordion, in RunSettings.from_ui order."""
    with gr.Accordion("Advanced", open=False, elem_id=f"{tab}_advanced"):
        steps = gr.Slider(1, MAX_STEPS, value=defaults.steps, step=1, label="Steps", elem_id=f"{tab}_steps")
        guidance = gr.Slider(0, MAX_GUIDANCE, value=defaults.guidance, step=0.1, label="Guidance scale")
        seed = gr.Number(defaults.seed, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
        scheduler = gr.Dropdown(list(SCHEDULERS), value=defaults.scheduler, label="Scheduler")
    return [steps, guidance, seed, scheduler]


def run_buttons(tab: str) -> tuple[gr.Button, gr.Button]:
    """Run and Stop, with element ids `{tab}_run` and `{tab}_stop`."""
    with gr.Row():
        run = gr.Button("Run", variant="primary", scale=3, elem_id=f"{tab}_run")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id=f"{tab}_stop")
    return run, stop


def progress_and_status(tab: str) -> list[gr.components.Component]:
    """A progress bar (percent of the run's denoising steps) and the status line "step k/N".

    Gradio's own progress display gives way to the first streamed image, so the bar is a widget
    of its own; `gr.Progress` still reports to API clients (`job.status().progress_data`)."""
    bar = gr.Slider(0, 100, value=0, step=1, label="Progress (%)", interactive=False, elem_id=f"{tab}_progress")
    status = gr.Textbox(label="Status", interactive=False, elem_id=f"{tab}_status")
    return [bar, status]


def result_image(label: str = "Result", elem_id: str | None = None) -> gr.Image:
    return gr.Image(
        label=label, interactive=False, height=400, format="png", elem_id=elem_id, elem_classes=[CANVAS_CLASS]
    )


def notice(tab: str) -> gr.Markdown:
    """What the user should know about the result next to it: inputs outside the model's
    training data, body parts it invented, a run stopped before its end. Empty when all is well."""
    return gr.Markdown("", elem_id=f"{tab}_notice", elem_classes=["omfa-notice"])


_STEP = re.compile(r"^(?P<what>.*): step (?P<k>\d+)/(?P<n>\d+)$")


def stopped(status: str, note: str) -> tuple[str, str]:
    """Status and notice after Stop: "Stopped at step k of N" and the image marked as a preview.
    A run stopped while it prepared its inputs says so; a finished or failed run, or none, is left
    as it is."""
    match = _STEP.match(status or "")
    if match is None:
        if (status or "").startswith(("Preparing", "Ready")):
            return "Stopped before the first step", note
        return status, note
    k, n, what = match["k"], match["n"], match["what"]
    where = "" if what in ("Try-on", "Try-off") else f" ({what})"
    preview = (
        f"**Stopped:** the image shown is the preview at step {k} of {n}, not a finished result; "
        "press Run for the whole run."
    )
    return f"Stopped at step {k} of {n}{where}", "\n\n".join(filter(None, [preview, note]))


def small_image(label: str) -> gr.Image:
    return gr.Image(
        label=label, interactive=False, height=180, format="png", buttons=[], min_width=80, elem_classes=[CANVAS_CLASS]
    )


def views_zip(gallery: Sequence[tuple[np.ndarray, str]], files: FileStore) -> str:
    """A zip of a gallery's views at the model's size, named by order, pose and turn: its path."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for k, (image, caption) in enumerate(gallery, start=1):
            name = re.sub(r"[^a-z0-9+-]+", "_", caption.lower()).strip("_")
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            archive.writestr(f"{k:02d}_{name}.png", png.getvalue())
    return files.write(buffer.getvalue(), name="pose_gallery")


def stream_frames(
    make: Callable[[], Iterator[Frame]],
    names: Sequence[str],
    files: AppFiles,
    progress: gr.Progress,
    gallery: bool = False,
    where: str = "run",
) -> Iterator[tuple]:
    """Map a run's frames onto output values: the images `names` as file paths of canvas-size PNGs
    (the page enlarges them; None when absent), the notice, the percent done, the status, then
    (when asked) the gallery and, once it is complete, a zip of its views.

    A ValueError is the user's: the status line says it, then it becomes a gr.Error (one log
    line, `where` names the run). Closing this generator (Stop) closes the run, which stops the
    sampler within one step."""
    frames = None
    # id(image) -> (image, path) of the images of the last frame: an image unchanged since then is
    # not encoded again. Only the last frame's are kept (a long run streams thousands
    # of images), and each with its array, so that its id is not reused by a new array meanwhile.
    written: dict[int, tuple[np.ndarray, str]] = {}

    def path(image: np.ndarray | None, current: dict[int, tuple[np.ndarray, str]]) -> str | None:
        if image is None:
            return None
        if id(image) not in current:
            current[id(image)] = written.get(id(image)) or (image, files.images.png(image))
        return current[id(image)][1]

    try:
        frames = make()
        for frame in frames:
            progress(frame.progress, desc=frame.status)
            current: dict[int, tuple[np.ndarray, str]] = {}
            shown = tuple(path(frame.images.get(name), current) for name in names)
            values = (*shown, notice_text(frame.notes), round(100 * frame.progress), frame.status)
            if gallery:
                views = [(path(image, current), caption) for image, caption in frame.gallery]
                archive = views_zip(frame.gallery, files.archives) if frame.done and frame.gallery else None
                values = (*values, views, archive)
            written = current
            yield values
    except ValueError as error:
        # The outputs keep what they show; the status line no longer claims the run is under way.
        kept = (gr.skip(),) * (len(names) + 2)
        yield (*kept, f"Not run: {sentence(error)}", *((gr.skip(), gr.skip()) if gallery else ()))
        raise user_error(error, where) from error
    finally:
        if frames is not None:
            frames.close()
        release_freed_memory()


def create_demo(
    pipe: OMFAPipeline,
    *,
    model_card: str | None = None,
    gpu: Callable[[Callable], Callable] | None = None,
    context: StudioContext | None = None,
) -> gr.Blocks:
    """Build the app around a loaded pipeline.

    Args:
        pipe: the pipeline every run uses (one per process).
        model_card: the checkpoint's model card (Markdown with front matter) for the About tab and
            the runs' notices (what the model was trained on); by default the context's card.
        gpu: a decorator for the sampling, the one part of a run that needs the
            accelerator (`spaces.GPU` on a Hugging Face ZeroGPU Space); None runs it as it is.
        context: shared resources built beforehand (with their own `gpu`); by default built
            from `pipe` and `gpu`.
    """
    card = ModelCard.parse(model_card) if model_card is not None else None
    ctx = context if context is not None else StudioContext(pipe, gpu=gpu, card=card)
    files = AppFiles()
    tab = _Tab(ctx, files)
    with gr.Blocks(title="OMFA Studio", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(HEADER)
        studio_pose = gr.State(preset_state(ctx, DEFAULT_PRESET))
        with gr.Tabs():
            with gr.Tab("Try-On", id="try_on"):
                tab.try_on(studio_pose)
            with gr.Tab("Try-Off", id="try_off"):
                tab.try_off()
            with gr.Tab("Outfit", id="outfit"):
                tab.outfit(studio_pose)
            with gr.Tab("Pose Gallery", id="pose_gallery"):
                tab.pose_gallery()
            with gr.Tab("Pose Studio", id="pose_studio"):
                build_pose_studio(ctx, files, studio_pose)
            with gr.Tab("About", id="about"):
                gr.Markdown(about(pipe, card or ctx.card), elem_id="about")
    return demo


class _Tab:
    """Builders of the tabs that run the model; each adds its widgets and its events."""

    # The outputs every try-on tab shows, in handler order (then the status line).
    TRY_ON_SHOWN = ("result", "reference", "upper", "lower", "pose")

    def __init__(self, ctx: StudioContext, files: AppFiles) -> None:
        self.ctx = ctx
        self.files = files

    def upload(self, label: str, elem_id: str, role: str) -> ImageUpload:
        return checked_upload(self.ctx, label, elem_id, role, height=260)

    def _launch(
        self,
        handler: Callable,
        run: gr.Button,
        stop: gr.Button,
        inputs: list,
        outputs: list,
        api_name: str,
        results: Sequence[tuple[gr.Image, str]],
    ) -> None:
        """Run and Stop. `outputs` end with the notice, the progress bar and the status (then the
        gallery's); `results` are the images a stopped run leaves as previews, with their labels."""
        note = next(o for o in outputs if isinstance(o, gr.Markdown))
        status = outputs[outputs.index(note) + 2]
        images = [image for image, _ in results]
        if results:  # a new run shows results again (a stopped run relabelled them as previews)

            def relabel() -> Any:
                updates = [gr.update(label=label) for _, label in results]
                return updates[0] if len(updates) == 1 else updates  # one output takes one value, not a list

            run.click(relabel, None, images, api_visibility="private", queue=False)
        event = run.click(
            handler, inputs, outputs, api_name=api_name, concurrency_id="diffusion", show_progress="hidden"
        )  # the run's own progress bar and status line show it

        def on_stop(current: str, current_note: str) -> list:
            status_now, note_now = stopped(current, current_note)
            if status_now == current:  # nothing was under way
                return [gr.skip()] * (2 + len(results))
            if not status_now.startswith("Stopped at step"):  # stopped before any preview
                return [status_now, note_now, *(gr.skip() for _ in results)]
            k = status_now.split()[3]
            return [status_now, note_now, *(gr.update(label=f"{label}: preview at step {k}") for _, label in results)]

        # After the cancellation, so that the status read is the last one the run sent.
        stop.click(None, None, None, cancels=[event]).then(
            on_stop, [status, note], [status, note, *images], api_visibility="private", queue=False
        )

    def _try_on_frames(
        self,
        portrait: str,
        sources: list[tuple[str, str]],
        pose: tuple,
        settings: tuple,
        progress: gr.Progress,
        where: str,
    ) -> Iterator[tuple]:
        """The try-on tabs' run: `pose` and `settings` are widget values, checked inside the run so that a
        bad value reaches the user as a message (stream_frames turns ValueErrors into gr.Error)."""
        pose_source, preset, turn, studio = pose
        yield from stream_frames(
            lambda: stream_try_on(
                self.ctx,
                portrait,
                sources,
                PoseChoice(pose_source, preset, float(turn or 0), studio),
                RunSettings.from_ui(*settings),
            ),
            self.TRY_ON_SHOWN,
            self.files,
            progress,
            where=where,
        )

    def _try_on_outputs(self, tab: str) -> list[gr.components.Component]:
        result = result_image(elem_id=f"{tab}_result")
        note = notice(tab)
        progress = progress_and_status(tab)
        with gr.Row():
            shown = [
                small_image(label)
                for label in ("Portrait as the model sees it", "Top worn", "Bottom worn", "Target pose")
            ]
        return [result, *shown, note, *progress]

    def try_on(self, studio_pose: gr.State) -> None:
        ctx = self.ctx
        with gr.Row():
            with gr.Column():
                portrait = self.upload("Portrait (one person)", "try_on_portrait", "portrait")
                garment = self.upload("Garment: laid flat, or worn by someone", "try_on_garment", "garment")
                part = gr.Radio(
                    [(label, v) for v, label in GARMENT_SLOTS.items()], value="upper", label="Which garment"
                )
                picker = pose_picker(ctx)
                settings = advanced_settings("try_on")
                run, stop = run_buttons("try_on")
            with gr.Column():
                outputs = self._try_on_outputs("try_on")
        gr.Examples(
            [
                [examples_path("portrait.png"), examples_path("top.png"), "upper", "preset", "walking"],
                [examples_path("portrait_2.png"), examples_path("bottom.png"), "lower", "portrait", DEFAULT_PRESET],
                [examples_path("portrait.png"), examples_path("dressed.png"), "upper", "preset", "a_pose"],
                [examples_path("astronaut.png"), examples_path("top.png"), "upper", "preset", DEFAULT_PRESET],
            ],
            inputs=[portrait, garment, part, picker.source, picker.preset],
            cache_examples=False,
            example_labels=[
                "Top, walking",
                "Bottom, in the portrait's pose",
                "Transfer from a dressed person",
                "A real photo",
            ],
        )

        def try_on(
            portrait: str,
            garment: str,
            which: str,
            pose_source: str,
            preset: str,
            turn: float,
            steps: float,
            guidance: float,
            seed: float,
            scheduler: str,
            studio: Any,
            progress: gr.Progress = gr.Progress(),
        ) -> Iterator[tuple]:
            """Put a garment (flat, or taken off a dressed person) on the portrait's person."""
            pose = (pose_source, preset, turn, studio)
            yield from self._try_on_frames(
                portrait, [(garment, which)], pose, (steps, guidance, seed, scheduler), progress, "try_on"
            )

        inputs = [portrait, garment, part, *picker.inputs, *settings, studio_pose]
        self._launch(try_on, run, stop, inputs, outputs, "try_on", [(outputs[0], "Result")])

    def try_off(self) -> None:
        ctx = self.ctx
        with gr.Row():
            with gr.Column():
                dressed = self.upload("A person wearing the garments", "try_off_photo", "photo")
                part = gr.Radio(
                    [("Top", "upper"), ("Bottom", "lower"), ("Both", "both")], value="upper", label="Take off"
                )
                settings = advanced_settings("try_off", TRY_OFF_DEFAULTS)
                run, stop = run_buttons("try_off")
            with gr.Column():
                with gr.Row():
                    upper, lower = result_image("Top", "try_off_upper"), result_image("Bottom", "try_off_lower")
                note = notice("try_off")
                progress = progress_and_status("try_off")
                reference = small_image("The photo as the model sees it")
        gr.Examples(
            [
                [examples_path("dressed.png"), "upper"],
                [examples_path("portrait.png"), "both"],
                [examples_path("astronaut.png"), "upper"],
            ],
            inputs=[dressed, part],
            cache_examples=False,
        )

        def try_off(
            dressed: str,
            which: str,
            steps: float,
            guidance: float,
            seed: float,
            scheduler: str,
            progress: gr.Progress = gr.Progress(),
        ) -> Iterator[tuple]:
            """The flat shop image(s) of what the person wears."""
            yield from stream_frames(
                lambda: stream_try_off(ctx, dressed, which, RunSettings.from_ui(steps, guidance, seed, scheduler)),
                ("upper", "lower", "reference"),
                self.files,
                progress,
                where="try_off",
            )

        outputs = [upper, lower, reference, note, *progress]
        self._launch(
            try_off, run, stop, [dressed, part, *settings], outputs, "try_off", [(upper, "Top"), (lower, "Bottom")]
        )

    def outfit(self, studio_pose: gr.State) -> None:
        ctx = self.ctx
        with gr.Row():
            with gr.Column():
                portrait = self.upload("Portrait (one person)", "outfit_portrait", "portrait")
                with gr.Row():
                    top = self.upload("Top (flat, or worn by someone)", "outfit_top", "garment")
                    bottom = self.upload("Bottom (flat, or worn by someone)", "outfit_bottom", "garment")
                picker = pose_picker(ctx)
                settings = advanced_settings("outfit")
                run, stop = run_buttons("outfit")
            with gr.Column():
                outputs = self._try_on_outputs("outfit")
        gr.Examples(
            [
                [
                    examples_path("portrait_2.png"),
                    examples_path("top.png"),
                    examples_path("bottom.png"),
                    "preset",
                    "runway_stride",
                ]
            ],
            inputs=[portrait, top, bottom, picker.source, picker.preset],
            cache_examples=False,
        )

        def outfit(
            portrait: str,
            top: str,
            bottom: str,
            pose_source: str,
            preset: str,
            turn: float,
            steps: float,
            guidance: float,
            seed: float,
            scheduler: str,
            studio: Any,
            progress: gr.Progress = gr.Progress(),
        ) -> Iterator[tuple]:
            """Put a top and a bottom (each flat, or worn by someone) on the portrait's person."""
            sources = [(top, "upper"), (bottom, "lower")]
            pose = (pose_source, preset, turn, studio)
            yield from self._try_on_frames(
                portrait, sources, pose, (steps, guidance, seed, scheduler), progress, "outfit"
            )

        inputs = [portrait, top, bottom, *picker.inputs, *settings, studio_pose]
        self._launch(outfit, run, stop, inputs, outputs, "outfit", [(outputs[0], "Result")])

    def pose_gallery(self) -> None:
        ctx = self.ctx
        with gr.Row():
            with gr.Column():
                portrait = self.upload("Portrait (one person)", "pose_gallery_portrait", "portrait")
                presets = gr.CheckboxGroup(
                    [(p.label, name) for name, p in ctx.presets.items()], value=["a_pose", "walking"], label="Poses"
                )
                turns = gr.CheckboxGroup(
                    [(f"{t:+d}" if t else "0", t) for t in GALLERY_TURNS],
                    value=[0],
                    label=f"Turns in degrees, added to each pose's own view (at most {MAX_VIEWS} views in all)",
                )
                settings = advanced_settings("pose_gallery")
                run, stop = run_buttons("pose_gallery")
            with gr.Column():
                # Views at a readable size (two to a row, the gallery as tall as its rows), each
                # captioned with its pose and turn (on its lower edge); all of them in one zip below.
                views = gr.Gallery(
                    label="Views",
                    columns=2,
                    height="auto",
                    object_fit="contain",
                    format="png",
                    interactive=False,
                    elem_id="pose_gallery_views",
                )
                archive = gr.File(label="All views (.zip)", interactive=False, elem_id="pose_gallery_zip")
                note = notice("pose_gallery")
                progress = progress_and_status("pose_gallery")
                with gr.Row():
                    preview, pose = small_image("View in progress"), small_image("Its pose")
        gr.Examples(
            [[examples_path("portrait.png"), ["a_pose", "walking"], [0, 90]]],
            inputs=[portrait, presets, turns],
            cache_examples=False,
        )

        def pose_gallery(
            portrait: str,
            poses: list[str],
            turns: list[float],
            steps: float,
            guidance: float,
            seed: float,
            scheduler: str,
            progress: gr.Progress = gr.Progress(),
        ) -> Iterator[tuple]:
            """The portrait's person, same outfit, in several poses and views; view k uses seed + k."""
            yield from stream_frames(
                lambda: stream_gallery(
                    ctx, portrait, poses or [], turns or [], RunSettings.from_ui(steps, guidance, seed, scheduler)
                ),
                ("result", "pose"),
                self.files,
                progress,
                gallery=True,
                where="pose_gallery",
            )

        outputs = [preview, pose, note, *progress, views, archive]
        self._launch(pose_gallery, run, stop, [portrait, presets, turns, *settings], outputs, "pose_gallery", [])


def about(pipe: OMFAPipeline, card: ModelCard | None) -> str:
    """The About tab: the method, the loaded model, what the app expects, then the model's card."""
    config = pipe.transformer.config
    params = sum(p.numel() for p in pipe.transformer.parameters())
    height, width = pipe.canvas_hw
    model = (
        f"### The loaded model\n{params / 1e6:.1f} M parameters (hidden size {config.hidden_size}, "
        f"{config.depth} layers, patch {config.patch_size}), {height}x{width} px slots (height x width), "
        f"{'pixel space' if pipe.vae is None else 'latent space'}, running on {pipe.device.type.upper()} "
        f"in {str(pipe.transformer.dtype).removeprefix('torch.')}."
    )
    text = demote_headings(card.markdown, 2) if card is not None else "No model card was found next to the checkpoint."
    return "\n\n".join([ABOUT, model, INPUTS, "## Model card", text])


def demote_headings(markdown: str, levels: int) -> str:
    """Markdown with every heading `levels` deeper (code blocks untouched): the card's own title
    then sits under the About tab's "Model card" heading instead of above it."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            line = "#" * levels + line
        lines.append(line)
    return "\n".join(lines)
