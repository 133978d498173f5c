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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import gradio as gr
import numpy as np

from omfa.app.files import CANVAS_CLASS, AppFiles, FileStore
from omfa.app.pose_studio import DEFAULT_PRESET, build_pose_studio, pose_picker, preset_state
from omfa.app.uploads import ImageUpload, image_upload
from omfa.diffusion import SCHEDULERS
from omfa.pipeline import OMFAPipeline
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
from omfa.studio.settings import MAX_GUIDANCE, MAX_SEED, MAX_STEPS, RunSettings

HEADER = """# OMFA Studio
One diffusion model for try-on, try-off, outfits and any pose. Upload a portrait and a garment
(laid flat, or worn by someone else), pick a pose, and watch the model's estimate sharpen step by step."""

LIMITS = """### Limits
- The shipped model is small and was trained only on the project's synthetic fitting room
  (rendered mannequins with procedural garments) at 128x96 pixels. Real photos are far from
  what it has seen: expect the colours and coarse patterns of a garment, not its details.
- Garments in the training data are painted onto the body: no drape, no loose fabric, no layers.
- One person per photo, seen from head to at least the chest; the background is removed
  automatically (U²-Net small, MediaPipe as a fallback) and may cut off thin parts.
- Poses come from the SMPL-X body of the mannequin; hands and faces are not modelled.
- Images are generated at the model's canvas size (128x96 for the shipped model) and shown
  enlarged three times."""

ABOUT = """## About
OMFA Studio implements *One Model For All: Partial Diffusion for Unified Try-On and Try-Off in Any
Pose* (arXiv 2508.04559). The canvas is a set of image slots (person, portrait, top, bottom); a task
says which slots are generated and which are given, and only the generated ones are noised. The
same model therefore does try-on, try-off, outfits, garment transfer (try-off, then try-on) and new
poses and views, conditioned on a pose map rendered from an SMPL-X pose. Each denoising step's
estimate of the clean image (Tweedie's formula) is what you see forming."""


def theme() -> gr.themes.Theme:
    """The default theme with the system's fonts: the app works offline, with no font downloads."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "SFMono-Regular", "monospace"]
    )


def examples_path(name: str) -> str:
    """Path of a shipped example image."""
    return str(EXAMPLES_DIR / name)


def advanced_settings() -> list[gr.components.Component]:
    """Steps, guidance, seed and scheduler in a closed accordion, in RunSettings.from_ui order."""
    with gr.Accordion("Advanced", open=False):
        steps = gr.Slider(1, MAX_STEPS, value=RunSettings.steps, step=1, label="Steps")
        guidance = gr.Slider(0, MAX_GUIDANCE, value=RunSettings.guidance, step=0.1, label="Guidance scale")
        seed = gr.Number(RunSettings.seed, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
        scheduler = gr.Dropdown(list(SCHEDULERS), value=RunSettings.scheduler, label="Scheduler")
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


def small_image(label: str) -> gr.Image:
    return gr.Image(
        label=label, interactive=False, height=180, format="png", buttons=[], min_width=80, elem_classes=[CANVAS_CLASS]
    )


def upload(label: str, elem_id: str | None = None) -> ImageUpload:
    return image_upload(label, height=260, elem_id=elem_id)


def stream_frames(
    make: Callable[[], Iterator[Frame]],
    names: Sequence[str],
    files: FileStore,
    progress: gr.Progress,
    gallery: bool = False,
) -> Iterator[tuple]:
    """Map a run's frames onto output values: the images `names` as file paths of canvas-size PNGs
    (the page enlarges them; None when absent), the percent done, the status, then the gallery when asked.
    A ValueError becomes a gr.Error for the user; closing this generator (Stop) closes the run,
    which stops the sampler within one step."""
    frames = None
    # id(image) -> (image, path) of the images of the last frame: an image unchanged since then is
    # not encoded again. Only the last frame's are kept (a long run streams thousands
    # of images), and each with its array, so that its id is not reused by a new array meanwhile.
    written: dict[int, tuple[np.ndarray, str]] = {}

    def path(image: np.ndarray | None, current: dict[int, tuple[np.ndarray, str]]) -> str | None:
        if image is None:
            return None
        if id(image) not in current:
            current[id(image)] = written.get(id(image)) or (image, files.png(image))
        return current[id(image)][1]

    try:
        frames = make()
        for frame in frames:
            progress(frame.progress, desc=frame.status)
            current: dict[int, tuple[np.ndarray, str]] = {}
            shown = tuple(path(frame.images.get(name), current) for name in names)
            values = (*shown, round(100 * frame.progress), frame.status)
            views = [(path(image, current), caption) for image, caption in frame.gallery] if gallery else None
            written = current
            yield values if views is None else (*values, views)
    except ValueError as error:
        raise gr.Error(sentence(error)) from error
    finally:
        if frames is not None:
            frames.close()


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
        model_card: the checkpoint's model card (Markdown) for the About tab.
        gpu: a decorator for the sampling, the one part of a run that needs the
            accelerator (`spaces.GPU` on a Hugging Face ZeroGPU Space); None runs it as it is.
        context: shared resources built beforehand (with their own `gpu`); by default built
            from `pipe` and `gpu`.
    """
    ctx = context if context is not None else StudioContext(pipe, gpu=gpu)
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
                gr.Markdown(about(pipe, model_card))
    return demo


class _Tab:
    """Builders of the tabs that run the model; each adds its widgets and its events."""

    # The outputs every try-on tab shows, in handler order (then the status line).
    TRY_ON_SHOWN = ("result", "reference", "upper", "lower", "pose")

    def __init__(self, ctx: StudioContext, files: AppFiles) -> None:
        self.ctx = ctx
        self.images = files.images

    def _launch(
        self, handler: Callable, run: gr.Button, stop: gr.Button, inputs: list, outputs: list, api_name: str
    ) -> None:
        event = run.click(
            handler, inputs, outputs, api_name=api_name, concurrency_id="diffusion", show_progress="hidden"
        )  # the run's own progress bar and status line show it
        stop.click(None, None, None, cancels=[event])

    def _try_on_frames(
        self, portrait: str, sources: list[tuple[str, str]], pose: tuple, settings: tuple, progress: gr.Progress
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
            self.images,
            progress,
        )

    def _try_on_outputs(self, tab: str) -> list[gr.components.Component]:
        result = result_image(elem_id=f"{tab}_result")
        progress = progress_and_status(tab)
        with gr.Row():
            shown = [
                small_image(label)
                for label in ("Portrait as the model sees it", "Top worn", "Bottom worn", "Target pose")
            ]
        return [result, *shown, *progress]

    def try_on(self, studio_pose: gr.State) -> None:
        ctx = self.ctx
        with gr.Row():
            with gr.Column():
                portrait = upload("Portrait (one person)", "try_on_portrait")
                garment = upload("Garment: laid flat, or worn by someone", "try_on_garment")
                part = gr.Radio(
                    [(label, v) for v, label in GARMENT_SLOTS.items()], value="upper", label="Which garment"
                )
                picker = pose_picker(ctx)
                settings = advanced_settings()
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
                portrait, [(garment, which)], pose, (steps, guidance, seed, scheduler), progress
            )

        self._launch(
            try_on, run, stop, [portrait, garment, part, *picker.inputs, *settings, studio_pose], outputs, "try_on"
        )

    def try_off(self) -> None:
        ctx = self.ctx
        with gr.Row():
            with gr.Column():
                dressed = upload("A person wearing the garments")
                part = gr.Radio(
                    [("Top", "upper"), ("Bottom", "lower"), ("Both", "both")], value="upper", label="Take off"
                )
                settings = advanced_settings()
                run, stop = run_buttons("try_off")
            with gr.Column():
                with gr.Row():
                    upper, lower = result_image("Top"), result_image("Bottom")
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
                self.images,
                progress,
            )

        self._launch(try_off, run, stop, [dressed, part, *settings], [upper, lower, reference, *progress], "try_off")

    def outfit(self, studio_pose: gr.State) -> None:
        ctx = self.ctx
        with gr.Row():
            with gr.Column():
                portrait = upload("Portrait (one person)")
                with gr.Row():
                    top, bottom = upload("Top (flat, or worn by someone)"), upload("Bottom (flat, or worn by someone)")
                picker = pose_picker(ctx)
                settings = advanced_settings()
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
            yield from self._try_on_frames(portrait, sources, pose, (steps, guidance, seed, scheduler), progress)

        self._launch(
            outfit, run, stop, [portrait, top, bottom, *picker.inputs, *settings, studio_pose], outputs, "outfit"
        )

    def pose_gallery(self) -> None:
        ctx = self.ctx
        with gr.Row():
            with gr.Column():
                portrait = upload("Portrait (one person)")
                presets = gr.CheckboxGroup(
                    [(p.label, name) for name, p in ctx.presets.items()], value=["a_pose", "walking"], label="Poses"
                )
                turns = gr.CheckboxGroup(
                    [(f"{t:+d}" if t else "0", t) for t in GALLERY_TURNS],
                    value=[0],
                    label=f"Turns in degrees, added to each pose's own view (at most {MAX_VIEWS} views in all)",
                )
                settings = advanced_settings()
                run, stop = run_buttons("pose_gallery")
            with gr.Column():
                views = gr.Gallery(
                    label="Views", columns=4, height=420, object_fit="contain", format="png", interactive=False
                )
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
                self.images,
                progress,
                gallery=True,
            )

        self._launch(
            pose_gallery,
            run,
            stop,
            [portrait, presets, turns, *settings],
            [preview, pose, *progress, views],
            "pose_gallery",
        )


def about(pipe: OMFAPipeline, model_card: str | None) -> str:
    """The About tab: the method, the loaded model, its card and its limits."""
    config = pipe.transformer.config
    params = sum(p.numel() for p in pipe.transformer.parameters())
    height, width = pipe.canvas_hw
    model = (
        f"### The loaded model\n{params / 1e6:.1f} M parameters (hidden size {config.hidden_size}, "
        f"{config.depth} layers, patch {config.patch_size}), {height}x{width} px slots (height x width), "
        f"{'pixel space' if pipe.vae is None else 'latent space'}, running on {pipe.device.type.upper()} "
        f"in {str(pipe.transformer.dtype).removeprefix('torch.')}."
    )
    card = strip_front_matter(model_card) if model_card else "No model card was found next to the checkpoint."
    return "\n\n".join([ABOUT, model, "### Model card", card, LIMITS])


def strip_front_matter(markdown: str) -> str:
    """A model card without its YAML front matter (the Hub's metadata block between '---' lines)."""
    text = markdown.strip()
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            text = text[end + 4 :].strip()
    return text
