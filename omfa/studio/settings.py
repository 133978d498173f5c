"""The sampler settings of a run, and the one part of a run that needs the accelerator.

A run is planned on the CPU (uploads prepared, pose maps rendered) as a list
of `omfa.pipeline.Stage`s; `sample_stages` then streams them with the run's
`RunSettings`, yielding every denoising step's Tweedie x0 estimate as plain
uint8 images. This is the function a Hugging Face ZeroGPU Space wraps in
`spaces.GPU`: its inputs are arrays, names and seeds, its outputs arrays, so
it can run in a GPU worker process where the studio's OpenGL thread and
MediaPipe graphs do not exist.

Seeds and carried garments follow `OMFAPipeline.stream_stages`, the rules of
`OMFAPipeline.transfer` and `OMFAPipeline.multiview` too: the same request
gives the same pixels here and there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from typing import Any

import torch

from omfa.canvas import tensor_to_image
from omfa.diffusion import SCHEDULERS
from omfa.pipeline import DEFAULT_VIEW_BATCH, OMFAPipeline, Preview, Stage

MAX_STEPS = 100
MAX_GUIDANCE = 20.0
MAX_SEED = 2**32 - 1
MAX_VIEW_BATCH = 8


class SettingsError(ValueError):
    """A sampler setting out of range."""


@dataclass(frozen=True)
class RunSettings:
    """The sampler settings of one run (the app's Advanced accordion, the CLI's --steps ... --scheduler)."""

    # Euler at 8 steps: on the test split, the best masked SSIM of every sampler and step count
    # measured, masked PSNR above DDIM at 20 steps on try-on and multi-view, the best pattern
    # fidelity there, at 0.4x the steps (`omfa bench steps`, docs/SPEED.md); try-off has its own
    # (`TRY_OFF_DEFAULTS`).
    steps: int = 8
    guidance: float = 2.0
    seed: int = 0
    scheduler: str = "euler"
    # views of a pose gallery sampled as one batch (`OMFAPipeline.stream_stages`); not a widget
    view_batch: int = DEFAULT_VIEW_BATCH

    def __post_init__(self) -> None:
        if not (isinstance(self.steps, int) and 1 <= self.steps <= MAX_STEPS):
            raise SettingsError(f"steps is {self.steps!r}; pick a whole number from 1 to {MAX_STEPS}")
        if not (math.isfinite(self.guidance) and 0.0 <= self.guidance <= MAX_GUIDANCE):
            raise SettingsError(f"guidance is {self.guidance!r}; pick a number from 0 to {MAX_GUIDANCE:g}")
        if not (isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED):
            raise SettingsError(f"seed is {self.seed!r}; pick a whole number from 0 to {MAX_SEED}")
        if self.scheduler not in SCHEDULERS:
            raise SettingsError(f"scheduler is {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if not (isinstance(self.view_batch, int) and 1 <= self.view_batch <= MAX_VIEW_BATCH):
            raise SettingsError(f"view_batch is {self.view_batch!r}; pick a whole number from 1 to {MAX_VIEW_BATCH}")

    @classmethod
    def from_ui(cls, steps: Any, guidance: Any, seed: Any, scheduler: Any) -> RunSettings:
        """Settings from widget values (sliders and number boxes send floats, or None when empty)."""

        def whole(value: Any, name: str, default: int) -> int:
            if value is None or value == "":
                return default
            number = float(value)
            if not number.is_integer():
                raise SettingsError(f"{name} is {value!r}; pick a whole number")
            return int(number)

        return cls(
            whole(steps, "steps", cls.steps),
            float(cls.guidance if guidance is None else guidance),
            whole(seed, "seed", cls.seed),
            scheduler or cls.scheduler,
        )


# Try-off's own defaults, from the same bench: DDIM at 10 steps is at or above DDIM-20's masked
# PSNR and SSIM on try-off, where Euler-8 is 0.06 to 0.08 dB below it (100 test cases).
TRY_OFF_DEFAULTS = RunSettings(steps=10, scheduler="ddim")


def sample_stages(pipe: OMFAPipeline, stages: Sequence[Stage], settings: RunSettings) -> Iterator[Preview]:
    """`pipe.stream_stages` with these settings, every preview's images as (H, W, 3) uint8 arrays
    at the model's canvas size.

    The run's generator is made here, from `settings.seed`, so that this
    function takes and returns only arrays, names and numbers (what a ZeroGPU
    worker process can receive and send back). Closing the iterator closes
    the pipeline's stream: the work stops within one step.
    """
    generator = torch.Generator(pipe.device).manual_seed(settings.seed)
    previews = pipe.stream_stages(
        stages,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        scheduler=settings.scheduler,
        generator=generator,
        output_type="pt",
        view_batch=settings.view_batch,
    )
    with closing(previews):
        for preview in previews:
            yield replace(preview, images={slot: tensor_to_image(x) for slot, x in preview.images.items()})
