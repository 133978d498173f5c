"""OMFAPipeline: try-on, try-off, outfit, transfer and multi-view with one model.

Every task runs the same four numbered steps:
  1. check and convert the inputs into canvas tensors (pixels or VAE latents);
  2. fetch each condition slot's keys/values from the condition cache;
  3. denoise the target slots only, with guidance that masks the guided
     conditions' keys in the unconditional branch;
  4. stream each step's Tweedie x0 estimate; the last one is the result.

On a latent canvas (a `vae`) step 4 decodes: every step with a cheap
decoder (the `preview_decoder`, a tiny autoencoder or a fitted linear
latent-to-RGB map, or a VAE that is itself tiny), else with the full VAE
every `preview_every`-th step; the last step always with the full VAE.

A run of several tasks (garment transfer: try-off, then try-on; a pose
gallery: its views in batches, `stream_views`) is a list of `Stage`s, planned by
`try_on_stages` or `multiview_stages` and streamed by
`OMFAPipeline.stream_stages`. Its seeding and carry rules live there and
nowhere else, so `transfer`, `multiview` and the app give the same pixels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from omfa.acceleration import ForwardCompiler, resolve_dtype
from omfa.backbones.flux import FluxOMFA
from omfa.cache import ConditionCache, tensor_digest
from omfa.canvas import SLOT_INDEX, SLOTS, TASKS, Task, get_task, image_to_tensor, tensor_to_image
from omfa.denoiser import ConditionKV, OMFATransformer
from omfa.diffusion import NUM_TRAIN_TIMESTEPS, SCHEDULERS, add_noise, alphas_cumprod, make_scheduler, sample
from omfa.latents import decode, decode_preview, encode, is_cheap_decoder, vae_factor

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor

# The checkpoint the project ships (diffusers layout, safetensors).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "omfa-tiny"
# Views of a multi-view run sampled as one batch. The batch does the same FLOPs as the views one
# after another; it saves per-call overhead and weight traffic: on the shipped checkpoint (bf16,
# compiled, one thread of a shared 2-core CPU) 4 views took 2.2x to 3.4x one view batched against
# 3.7x to 4.5x one after another (`omfa bench gallery`, three runs). Bounded so that a 12-view
# gallery holds the activations of 4 views, not 12.
DEFAULT_VIEW_BATCH = 4
# Without a cheap preview decoder a latent model decodes its preview with the full VAE every k-th
# step (and always the last): at 20 steps the user sees 6 images, and a large VAE's decode (which
# can cost as much as a denoising step) runs 6 times, not 20.
DEFAULT_PREVIEW_EVERY = 4


@dataclass
class Preview:
    """One streamed step. `images` maps each target slot to its x0 estimate; it is empty on a step
    whose estimate was not decoded (a latent model without a cheap preview decoder, `preview_every`)."""

    step: int
    num_steps: int
    timestep: float
    images: dict[str, PIL.Image.Image]
    final: bool
    task: str
    view: int = 0  # index of the pose in a multi-view run
    stage: str = ""  # "try_off" / "try_on" inside a transfer
    stage_index: int = 0  # position of its `Stage` in a multi-stage run (`stream_stages`)
    batch: tuple[int, ...] = ()  # the stage indices sampled together with it (`stream_stages`; () outside)


@dataclass
class OMFAOutput:
    """Final images per target slot (one per view for multi-view)."""

    images: dict[str, PIL.Image.Image]
    task: str
    extra: dict[str, Any] = field(default_factory=dict)


def _to_pil(images: dict[str, torch.Tensor]) -> dict[str, PIL.Image.Image]:
    """Slot -> (3, H, W) tensor in [-1, 1] becomes slot -> RGB image."""
    return {slot: PIL.Image.fromarray(tensor_to_image(x)) for slot, x in images.items()}


def default_device() -> tuple[torch.device, torch.dtype]:
    """CUDA in bf16 when present, else the CPU in fp32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


class OMFAPipeline(DiffusionPipeline):
    """One partial-diffusion model for all virtual-fitting tasks.

    Components: `transformer` (OMFATransformer), `scheduler` (the default
    sampler; a request may name another from `omfa.diffusion.SCHEDULERS`), an
    optional `vae` (None: the canvas is in pixel space; `omfa.latents`) and an
    optional `preview_decoder` of the VAE's latents (an `AutoencoderTiny` or an
    `omfa.latents.LatentRGBMap`) that decodes the per-step previews cheaply.
    """

    model_cpu_offload_seq = "transformer"
    _optional_components = ["vae", "preview_decoder"]

    # diffusers checks each component a pipeline loads against these annotations (a union lists every
    # accepted class; a class outside it is loaded with an "Expected types" warning)
    def __init__(
        self,
        transformer: OMFATransformer | FluxOMFA,
        scheduler: SchedulerMixin,
        vae: Any = None,
        preview_decoder: Any = None,
    ):
        super().__init__()
        if preview_decoder is not None and vae is None:
            raise ValueError("a preview_decoder decodes latents; a pixel-space pipeline (vae=None) has none")
        self.register_modules(transformer=transformer, scheduler=scheduler, vae=vae, preview_decoder=preview_decoder)
        self.condition_cache = ConditionCache()
        self.compiler: ForwardCompiler | None = None  # set by `compile`
        self.compiled_view_batches: set[tuple[str, int]] = set()  # (task, views) `compile` warmed up

    # -- loading -------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        precision: str | None = None,
    ) -> OMFAPipeline:
        """Load a checkpoint folder (default: the shipped one) on the best device.

        The weights' dtype is `dtype`, else the one `precision` names ("auto": bf16 where the
        device has it natively, `omfa.acceleration.resolve_dtype`), else bf16 on CUDA and fp32
        on the CPU. Only safetensors weights are read; nothing is downloaded.
        """
        path = Path(path) if path is not None else DEFAULT_MODEL_DIR
        if not (path / "model_index.json").is_file():
            raise ValueError(
                f"{path} is not an OMFA checkpoint folder (no model_index.json); "
                f"pass the folder written by save_pretrained or `omfa train`"
            )
        auto_device, auto_dtype = default_device()
        device = torch.device(device) if device is not None else auto_device
        if dtype is None and precision is not None:
            dtype = resolve_dtype(precision, device)
        dtype = dtype or (auto_dtype if device.type == "cuda" else torch.float32)
        pipe = cls.from_pretrained(path, dtype=dtype, use_safetensors=True, local_files_only=True)
        return pipe.to(device)

    # -- inputs --------------------------------------------------------------

    @property
    def canvas_hw(self) -> tuple[int, int]:
        """Pixel size of every slot image."""
        h, w = self.transformer.config.sample_size
        f = vae_factor(self.vae)
        return h * f, w * f

    def _to_tensor(self, image: ImageInput, name: str) -> torch.Tensor:
        """An input image -> (1, 3, H, W) float in [-1, 1] on the model's device."""
        h, w = self.canvas_hw
        if isinstance(image, PIL.Image.Image):
            if image.mode != "RGB":
                raise ValueError(f"{name} image has mode {image.mode}; convert it with .convert('RGB')")
            image = np.asarray(image)
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"{name} array must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
            x = image_to_tensor(image)[None]
        elif isinstance(image, torch.Tensor):
            x = image[None] if image.ndim == 3 else image
            if x.ndim != 4 or x.shape[:2] != (1, 3):
                raise ValueError(f"{name} tensor must be (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
            if not x.is_floating_point():
                raise ValueError(f"{name} tensor must be float in [-1, 1], got {x.dtype}")
        else:
            raise ValueError(f"{name} must be a PIL image, a uint8 numpy array or a tensor, got {type(image).__name__}")
        if tuple(x.shape[-2:]) != (h, w):
            raise ValueError(
                f"{name} image is {x.shape[-1]}x{x.shape[-2]} px; the model needs {w}x{h} "
                f"(width x height): crop and resize it first (omfa.imaging does this)"
            )
        return x.to(self.device, self.transformer.dtype)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Canvas values of an image: itself on a pixel canvas, else its latents (what training caches)."""
        return x if self.vae is None else encode(self.vae, x)

    def _preview_every(self, preview_every: int | None) -> int:
        """Decode every k-th step's preview: `preview_every`, else every step when decoding is cheap
        (pixels, a cheap preview decoder, a tiny VAE), else `DEFAULT_PREVIEW_EVERY`."""
        if preview_every is not None:
            if not isinstance(preview_every, int) or preview_every < 1:
                raise ValueError(f"preview_every must be an integer >= 1, got {preview_every!r}")
            return preview_every
        cheap = self.vae is None or self.preview_decoder is not None or is_cheap_decoder(self.vae)
        return 1 if cheap else DEFAULT_PREVIEW_EVERY

    def _decode_step(self, x0: torch.Tensor, index: int, final: bool, every: int) -> torch.Tensor | None:
        """Images (T, 3, H, W) of one view's x0 (T, C, h, w) at step `index`, or None on a step that
        `every` skips. The last step is decoded by the full VAE: the preview is the result."""
        if self.vae is None:
            return x0
        if final:
            return decode(self.vae, x0)
        if index % every:
            return None
        decoder = self.vae if self.preview_decoder is None else self.preview_decoder
        return decode_preview(decoder, x0, self.canvas_hw)

    def _gather(self, task: Task, images: dict[str, ImageInput | None], poses: Sequence[ImageInput | None]):
        """Condition slot -> (1, C, H, W) canvas tensor, and the views' pose maps (V, Cp, H, W) (None
        for a task without a pose)."""
        missing = [s for s in task.conditions if images.get(s) is None]
        if missing:
            raise ValueError(f"task {task.name} needs the {' and '.join(missing)} image(s); pass {missing[0]}=...")
        if task.uses_pose and any(pose is None for pose in poses):
            raise ValueError(
                f"task {task.name} needs a pose map for the target pose; pass pose=... "
                "(omfa.pose.condition.pose_condition renders one)"
            )
        conds = {s: self._encode(self._to_tensor(images[s], s)) for s in task.conditions}
        pose_t = torch.cat([self._encode(self._to_tensor(p, "pose")) for p in poses]) if task.uses_pose else None
        return conds, pose_t

    # -- the condition cache ----------------------------------------------------

    def _weights_version(self) -> tuple:
        """Changes whenever the transformer's weights do: replaced (a new module, `.to(dtype)`, a new
        storage) or updated in place (`load_state_dict`, an optimiser step bump a tensor's version)."""
        params = list(self.transformer.parameters())
        return id(self.transformer), params[0].data_ptr(), sum(p._version for p in params)

    def _condition_kv(self, slot: str, x: torch.Tensor) -> ConditionKV:
        # everything that changes the keys' values: the weights, where and in what precision they
        # run (an autocast region computes in its own dtype), the slot and the image's exact bytes
        device = self.device.type
        autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        key = (self._weights_version(), str(self.device), str(self.transformer.dtype), str(autocast), slot)
        key += (tensor_digest(x),)
        return self.condition_cache.get_or_compute(
            key, lambda: self.transformer.encode_conditions(x[:, None], [SLOT_INDEX[slot]])
        )

    # -- sampling ------------------------------------------------------------

    @torch.no_grad()
    def stream(
        self,
        task: str,
        *,
        reference: ImageInput | None = None,
        upper: ImageInput | None = None,
        lower: ImageInput | None = None,
        pose: ImageInput | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        scheduler: str | None = None,
        use_cache: bool = True,
        output_type: str = "pil",
        preview_every: int | None = None,
    ) -> Iterator[Preview]:
        """Run one task, yielding a `Preview` after every denoising step.

        The last preview (final=True) holds the result. On a latent canvas the
        previews between are decoded every `preview_every`-th step (default:
        every step when a cheap decoder is at hand, else every
        `DEFAULT_PREVIEW_EVERY`-th; steps 0, k, 2k, ...) and the others carry
        no images. Closing the iterator stops the work within one step.
        """
        yield from self.stream_views(
            task,
            reference=reference,
            upper=upper,
            lower=lower,
            poses=[pose],
            generators=[generator],
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            scheduler=scheduler,
            use_cache=use_cache,
            output_type=output_type,
            preview_every=preview_every,
        )

    @torch.no_grad()
    def stream_views(
        self,
        task: str,
        *,
        reference: ImageInput | None = None,
        upper: ImageInput | None = None,
        lower: ImageInput | None = None,
        poses: Sequence[ImageInput | None],
        generators: Sequence[torch.Generator | None],
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        scheduler: str | None = None,
        use_cache: bool = True,
        output_type: str = "pil",
        preview_every: int | None = None,
    ) -> Iterator[Preview]:
        """Run one task for several views at once: view v has pose map `poses[v]` (None for a task
        without a pose) and draws its noise from `generators[v]` alone.

        The views share the conditions (one cache entry, broadcast) and go through the denoiser as
        one batch. View v gives the image `stream` gives with `poses[v]` and `generators[v]`, to
        float rounding (a batched matmul may round differently), whatever the other views. After
        every step one `Preview` per view is yielded, in view order (`Preview.view` = v); which
        steps carry images is `stream`'s `preview_every` rule.
        """
        spec = get_task(task)
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        if not np.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}")
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        if not poses or len(poses) != len(generators):
            raise ValueError(f"got {len(poses)} poses and {len(generators)} generators; pass one of each per view")
        views = len(poses)
        every = self._preview_every(preview_every)
        sched = make_scheduler(scheduler) if scheduler else type(self.scheduler).from_config(self.scheduler.config)
        # 1. inputs: conditions (1, C, H, W) each, shared by the views; pose maps (V, Cp, H, W)
        conds, pose_t = self._gather(spec, {"reference": reference, "upper": upper, "lower": lower}, poses)
        target_slots, cond_slots = spec.slot_indices()
        # 2. condition keys/values, once per request (and across requests), batch 1 and broadcast to
        # every view and branch; a model whose conditions attend to each other (an ablation) has no
        # exact cache and runs uncached
        use_cache = use_cache and self.transformer.config.local_condition_attention
        if use_cache:
            cache = ConditionKV.cat([self._condition_kv(s, conds[s]) for s in spec.conditions])
        else:
            cond_x = torch.cat([conds[s][:, None] for s in spec.conditions], dim=1)  # (1, K, C, H, W)
        # 3. guidance: the unconditional branch masks the guided conditions
        use_cfg = guidance_scale != 1.0 and bool(spec.guidance)
        keep = torch.ones(1, len(cond_slots), dtype=torch.bool, device=self.device)
        if use_cfg:
            drop = torch.tensor([[s not in spec.guidance for s in spec.conditions]], device=self.device)
            keep = torch.cat([keep, drop], dim=0)
        branches = keep.shape[0]

        # The denoiser's batch is branch-major: row b * V + v is view v in branch b (0: conditional,
        # 1: unconditional). expand + reshape copies nothing at V = 1 (the single-view path's layout).
        def rows(x: torch.Tensor) -> torch.Tensor:  # (V, ...) -> (branches * V, ...)
            return x[None].expand(branches, *x.shape).reshape(branches * x.shape[0], *x.shape[1:])

        keep_rows = keep.repeat_interleave(views, dim=0)  # (branches * V, K)
        pose_rows = None if pose_t is None else rows(pose_t)  # (branches * V, Cp, H, W)

        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # x_t (V, T, C, H, W), t (V,) -> x0 (V, T, C, H, W)
            # with guidance the denoiser combines the branches itself (before its pixel refiner, which
            # then runs once per view) and returns V rows
            x_in, t_in = rows(x_t).to(self.transformer.dtype), rows(t)
            scale = guidance_scale if use_cfg else None
            if use_cache:
                forward = self.compiler or self.transformer.forward_cached
                return forward(x_in, target_slots, t_in, cache, pose_rows, keep_rows, scale)
            cond_in = cond_x.expand(branches * views, *cond_x.shape[1:])
            return self.transformer(x_in, target_slots, t_in, cond_in, cond_slots, pose_rows, keep_rows, scale)

        latent_shape = (views, len(target_slots), *self._latent_chw())
        for step in sample(denoise, latent_shape, sched, num_inference_steps, list(generators), self.device):
            # 4. the Tweedie preview of every target slot of every view (none on a skipped step)
            for v in range(views):
                pixels = self._decode_step(step.x0[v], step.index, step.final, every)
                images = {} if pixels is None else {s: pixels[i].float() for i, s in enumerate(spec.targets)}
                if output_type == "pil":
                    images = _to_pil(images)
                yield Preview(step.index, step.num_steps, step.timestep, images, step.final, spec.name, view=v)

    def compile(
        self,
        tasks: Sequence[str] | None = None,
        guidance_scale: float = 2.0,
        background: bool = True,
        view_batch: int = 1,
    ) -> ForwardCompiler:
        """Compile the cached forward for `tasks` (default: every task) at this guidance
        (`omfa.acceleration.ForwardCompiler`): requests run eagerly until it is done.

        The warm-up samples each task for two steps on random images (conditions are
        encoded eagerly; only the per-step forward is compiled); with `view_batch` > 1 the
        "multiview" task (the pose gallery's) also for a batch of that many views, the shape
        `stream_stages(view_batch=...)` samples a gallery's full batches in.
        """
        tasks = list(TASKS) if tasks is None else list(tasks)
        for task in tasks:
            get_task(task)
        h, w = self.canvas_hw
        noise = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        inputs = {"reference": noise, "upper": noise, "lower": noise, "pose": noise}
        compiler = ForwardCompiler(self.transformer.forward_cached)

        def warm_up() -> None:
            for task in tasks:
                spec = get_task(task)
                given = {k: v for k, v in inputs.items() if k in spec.conditions or (k == "pose" and spec.uses_pose)}
                for _ in self.stream(task, **given, num_inference_steps=2, guidance_scale=guidance_scale):
                    pass
                if task == "multiview" and view_batch > 1:
                    views = {"poses": [noise] * view_batch, "generators": [torch.Generator(self.device)] * view_batch}
                    for _ in self.stream_views(
                        task, reference=noise, **views, num_inference_steps=2, guidance_scale=guidance_scale
                    ):
                        pass

        self.compiler = compiler
        self.compiled_view_batches = {("multiview", view_batch)} if "multiview" in tasks and view_batch > 1 else set()
        compiler.warm_up(warm_up, background)
        return compiler

    def _latent_chw(self) -> tuple[int, int, int]:
        cfg = self.transformer.config
        return (cfg.in_channels, *cfg.sample_size)

    def __call__(
        self,
        task: str,
        *,
        callback_on_step_end: Callable[[OMFAPipeline, int, float, dict], dict | None] | None = None,
        **kwargs: Any,
    ) -> OMFAOutput:
        """Run a task to the end. `callback_on_step_end(pipe, step, timestep, {"x0": images})`
        follows the diffusers convention; it may return {"stop": True} to end early."""
        last = None
        for preview in self.stream(task, **kwargs):
            last = preview
            if callback_on_step_end is not None:
                out = callback_on_step_end(self, preview.step, preview.timestep, {"x0": preview.images})
                if out and out.get("stop"):
                    break
        return OMFAOutput(last.images, task, {"steps": last.step + 1})

    # -- the tasks -------------------------------------------------------------

    @staticmethod
    def try_on_task(upper: Any, lower: Any) -> str:
        if upper is not None and lower is not None:
            return "outfit"
        if upper is not None:
            return "try_on_upper"
        if lower is not None:
            return "try_on_lower"
        raise ValueError("try-on needs a garment: pass upper=... and/or lower=...")

    @staticmethod
    def try_off_task(which: str) -> str:
        tasks = {"upper": "try_off_upper", "lower": "try_off_lower", "both": "try_off_outfit"}
        if which not in tasks:
            raise ValueError(f"which must be one of {', '.join(tasks)}, got {which!r}")
        return tasks[which]

    def try_on(
        self,
        reference: ImageInput,
        pose: ImageInput,
        upper: ImageInput | None = None,
        lower: ImageInput | None = None,
        **kwargs: Any,
    ) -> OMFAOutput:
        """The portrait's person wearing the given garment(s) in the pose of `pose`."""
        return self(self.try_on_task(upper, lower), reference=reference, upper=upper, lower=lower, pose=pose, **kwargs)

    def outfit(
        self, reference: ImageInput, upper: ImageInput, lower: ImageInput, pose: ImageInput, **kwargs: Any
    ) -> OMFAOutput:
        """Both garments at once."""
        return self("outfit", reference=reference, upper=upper, lower=lower, pose=pose, **kwargs)

    def try_off(self, dressed: ImageInput, which: str = "upper", **kwargs: Any) -> OMFAOutput:
        """The flat shop image(s) of what the dressed person wears."""
        return self(self.try_off_task(which), reference=dressed, **kwargs)

    # -- multi-stage runs: the plans are `try_on_stages` and `multiview_stages` (below the class) ----------

    def stream_stages(
        self,
        stages: Sequence[Stage],
        *,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        view_batch: int = 1,
        **kwargs: Any,
    ) -> Iterator[Preview]:
        """Run `stages` in order, yielding a `Preview` after every denoising step of each.

        The seeding and carry rules of every multi-stage run:
        - a stage with `seed=None` draws from `generator` (one generator for the
          whole run, so a transfer's try-on continues the try-off's noise); a
          stage with a seed draws from a fresh generator seeded so;
        - the final images of a `carry` stage are inputs of every later stage,
          passed on as tensors, never rounded to uint8 in between.
        Batching: up to `view_batch` consecutive stages that differ only in
        their pose map and seed (the views of a multi-view run: same task, the
        same condition image objects, each its own seed, none carried) are
        sampled together (`stream_views`); each still draws from its own seeded
        generator, so its images are the ones it gets alone, to float rounding.
        With a compiled forward only batches it was warmed up for are formed
        (`compile(view_batch=...)`); other views run one by one, compiled.
        After every step of a batch a preview of each of its stages is yielded,
        in stage order, each with `batch` = the stage indices sampled together.
        Each preview names its stage (`stage`, `view`, `stage_index`). `kwargs`
        are `stream`'s sampling options (num_inference_steps, guidance_scale,
        scheduler, use_cache). Closing the iterator stops the work within one step.
        """
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        if not isinstance(view_batch, int) or view_batch < 1:
            raise ValueError(f"view_batch must be an integer >= 1, got {view_batch!r}")
        carried: dict[str, torch.Tensor] = {}
        for batch in self._stage_batches(stages, view_batch):
            group = [stages[i] for i in batch]
            first = group[0]
            generators = [
                generator if stage.seed is None else torch.Generator(self.device).manual_seed(stage.seed)
                for stage in group
            ]
            inputs = {**carried, **{slot: image for slot, image in first.inputs.items() if slot != "pose"}}
            previews = self.stream_views(
                first.task,
                **inputs,
                poses=[stage.inputs.get("pose") for stage in group],
                generators=generators,
                output_type="pt",
                **kwargs,
            )
            with closing(previews):
                for p in previews:
                    stage = group[p.view]
                    if p.final and stage.carry:
                        carried.update(p.images)
                    images = _to_pil(p.images) if output_type == "pil" else p.images
                    yield replace(
                        p, images=images, view=stage.view, stage=stage.name, stage_index=batch[p.view], batch=batch
                    )

    def _stage_batches(self, stages: Sequence[Stage], view_batch: int) -> Iterator[tuple[int, ...]]:
        """`_stage_batches`, with a batch that the compiled forward has no graph for split into single
        stages: it would run eagerly, slower than compiled stages one by one (`compile(view_batch=...)`)."""
        for batch in _stage_batches(stages, view_batch):
            task = stages[batch[0]].task
            if len(batch) > 1 and self.compiler is not None and (task, len(batch)) not in self.compiled_view_batches:
                yield from ((i,) for i in batch)
            else:
                yield batch

    def stream_transfer(
        self, source: ImageInput, reference: ImageInput, pose: ImageInput, which: str = "upper", **kwargs: Any
    ) -> Iterator[Preview]:
        """Try-off from `source` (another person's photo), then try-on onto `reference`, with one
        generator for both (`try_on_stages`, `stream_stages`)."""
        yield from self.stream_stages(try_on_stages(reference, pose, take_off=[(source, which)]), **kwargs)

    def transfer(
        self, source: ImageInput, reference: ImageInput, pose: ImageInput, which: str = "upper", **kwargs: Any
    ) -> OMFAOutput:
        """Put the garment another person wears onto the portrait's person."""
        garments, last = {}, None
        for p in self.stream_transfer(source, reference, pose, which, **kwargs):
            if p.final and p.stage == "try_off":
                garments = p.images
            last = p
        return OMFAOutput(last.images, last.task, {"garments": garments})

    def stream_multiview(
        self,
        reference: ImageInput,
        poses: Sequence[ImageInput],
        *,
        upper: ImageInput | None = None,
        lower: ImageInput | None = None,
        seed: int = 0,
        view_batch: int = DEFAULT_VIEW_BATCH,
        **kwargs: Any,
    ) -> Iterator[Preview]:
        """The same person (and outfit, or new garments if given) in several poses/views.

        View k has its own generator seeded `seed + k` (`multiview_stages`), so a
        view does not change when others are added (to float rounding: up to
        `view_batch` views are sampled as one batch, `stream_stages`); the
        conditions are encoded once and shared through the cache. After every
        step of a batch one preview per view of it is yielded (`Preview.view`,
        `Preview.batch`); `view_batch=1` samples the views one after another.
        """
        if "generator" in kwargs:
            raise ValueError("multiview seeds each view itself; pass seed=... instead of generator=...")
        stages = multiview_stages(reference, poses, upper=upper, lower=lower, seed=seed)
        yield from self.stream_stages(stages, view_batch=view_batch, **kwargs)

    @torch.no_grad()
    def denoise_once(
        self,
        task: str,
        truth: ImageInput,
        t: float,
        *,
        generator: torch.Generator,
        reference: ImageInput | None = None,
        upper: ImageInput | None = None,
        lower: ImageInput | None = None,
        pose: ImageInput | None = None,
    ) -> torch.Tensor:
        """A diagnostic, not a sampler: the denoiser's x0 estimate (3, H, W) in [-1, 1] for the one target
        slot of `task`, from its ground truth `truth` noised to time `t` in [0, 1] by the training schedule's
        forward process (x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps), conditions clean, no guidance.
        How much of the truth comes back at each noise level shows where sampling loses it."""
        spec = get_task(task)
        target_slots, cond_slots = spec.slot_indices()
        if len(target_slots) != 1:
            raise ValueError(f"denoise_once scores one target slot; task {task} has {len(target_slots)}")
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t must be in [0, 1], got {t!r}")
        conds, pose_t = self._gather(spec, {"reference": reference, "upper": upper, "lower": lower}, [pose])
        x0 = self._encode(self._to_tensor(truth, "truth")).float()
        index = min(int(t * NUM_TRAIN_TIMESTEPS), NUM_TRAIN_TIMESTEPS - 1)
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
        x_t = add_noise(x0, torch.tensor([index]), noise, alphas_cumprod())[:, None].to(self.transformer.dtype)
        cond_x = torch.cat([conds[s][:, None] for s in spec.conditions], dim=1) if spec.conditions else None
        timestep = torch.tensor([index / NUM_TRAIN_TIMESTEPS], device=self.device)
        pred = self.transformer(x_t, target_slots, timestep, cond_x, cond_slots, pose_t)
        return decode(self.vae, pred[:, 0].float())[0] if self.vae is not None else pred[0, 0].float()

    def multiview(self, reference: ImageInput, poses: Sequence[ImageInput], **kwargs: Any) -> list[OMFAOutput]:
        """Final images of every view, in pose order (`stream_multiview`'s options)."""
        return [
            OMFAOutput(p.images, p.task, {"view": p.view})
            for p in self.stream_multiview(reference, poses, **kwargs)
            if p.final
        ]


# -- multi-stage runs ---------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One task call of a multi-stage run (`OMFAPipeline.stream_stages`).

    inputs: condition images by slot name ("reference", "upper", "lower") and
        "pose", each an `ImageInput` at the model's canvas size.
    name: the stage's record, copied into its previews' `stage`
        ("try_off" and "try_on" in a transfer; "" for a view of a multi-view run).
    view: copied into its previews' `view` (the pose index of a multi-view run).
    seed: a fresh generator seeded so; None continues the run's generator.
    carry: the final images of this stage become inputs of the stages after it
        (try-off feeding try-on), kept as tensors so nothing is rounded between them.
    """

    task: str
    inputs: Mapping[str, ImageInput]
    name: str = ""
    view: int = 0
    seed: int | None = None
    carry: bool = False


def _stage_batches(stages: Sequence[Stage], size: int) -> list[tuple[int, ...]]:
    """Stage indices in runs of at most `size` consecutive stages that can be sampled as one batch:
    the same task and the same condition images (the same objects), each its own seed (a stage
    drawing from the run's generator depends on the stages before it), none carried."""

    def joins(a: Stage, b: Stage) -> bool:
        conditions = lambda s: {k: id(v) for k, v in s.inputs.items() if k != "pose"}  # noqa: E731
        seeded = a.seed is not None and b.seed is not None
        return seeded and a.task == b.task and not (a.carry or b.carry) and conditions(a) == conditions(b)

    batches: list[list[int]] = []
    for i, stage in enumerate(stages):
        if batches and len(batches[-1]) < size and joins(stages[batches[-1][-1]], stage):
            batches[-1].append(i)
        else:
            batches.append([i])
    return [tuple(b) for b in batches]


def try_on_stages(
    reference: ImageInput,
    pose: ImageInput,
    *,
    upper: ImageInput | None = None,
    lower: ImageInput | None = None,
    take_off: Sequence[tuple[ImageInput, str]] = (),
) -> list[Stage]:
    """The plan of a try-on whose garments may be worn by other people (garment transfer).

    Args:
        reference: the portrait; pose: the target pose map.
        upper, lower: flat garments, worn as they are.
        take_off: (photo of a dressed person, "upper" | "lower" | "both") pairs: each is a
            try-off stage whose result is carried into the try-on.

    Every stage draws from the run's one generator, in order: the same seed gives the same run.
    """
    worn = {slot for slot, image in (("upper", upper), ("lower", lower)) if image is not None}
    stages = []
    for source, which in take_off:
        task = OMFAPipeline.try_off_task(which)
        taken = set(get_task(task).targets)
        if taken & worn:
            raise ValueError(f"two garments were given for the {min(taken & worn)}; pass one top and one bottom")
        worn |= taken
        stages.append(Stage(task, {"reference": source}, "try_off", carry=True))
    task = OMFAPipeline.try_on_task(True if "upper" in worn else None, True if "lower" in worn else None)
    flat = {slot: image for slot, image in (("upper", upper), ("lower", lower)) if image is not None}
    stages.append(Stage(task, {"reference": reference, "pose": pose, **flat}, "try_on"))
    return stages


def multiview_stages(
    reference: ImageInput,
    poses: Sequence[ImageInput],
    *,
    upper: ImageInput | None = None,
    lower: ImageInput | None = None,
    seed: int = 0,
) -> list[Stage]:
    """The plan of a multi-view run: view k of `poses` seeded `seed + k`, so that a view does not
    change when others are added after it. With `upper`/`lower` the person wears them in every view."""
    if not poses:
        raise ValueError("multiview needs at least one pose map; pass poses=[...]")
    task = "multiview" if upper is None and lower is None else OMFAPipeline.try_on_task(upper, lower)
    garments = {slot: image for slot, image in (("upper", upper), ("lower", lower)) if image is not None}
    return [
        Stage(task, {"reference": reference, "pose": pose, **garments}, view=k, seed=seed + k)
        for k, pose in enumerate(poses)
    ]


__all__ = [
    "DEFAULT_VIEW_BATCH",
    "OMFAPipeline",
    "OMFAOutput",
    "Preview",
    "SCHEDULERS",
    "SLOTS",
    "Stage",
    "default_device",
    "multiview_stages",
    "try_on_stages",
]
