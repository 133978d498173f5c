"""The model-running part of an app run (the only code that needs the accelerator) and its settings.

A run is planned on the CPU (uploads prepared, pose maps rendered) as a list
of `Stage`s; `sample_stages` then streams them, yielding every denoising
step's Tweedie x0 estimate as plain uint8 images. This is the function a
Hugging Face ZeroGPU Space wraps in `spaces.GPU`: its inputs are arrays,
names and seeds, its outputs arrays, so it can run in a GPU worker process
where the app's OpenGL thread and MediaPipe graphs do not exist.

Randomness follows the pipeline's own methods, so a run here gives the same
pixels as `OMFAPipeline.transfer` (one generator for both stages) and
`OMFAPipeline.multiview` (view k seeded `seed + k`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from omfa.canvas import tensor_to_image
from omfa.diffusion import SCHEDULERS
from omfa.pipeline import OMFAPipeline

MAX_STEPS = 100
MAX_GUIDANCE = 20.0
MAX_SEED = 2**32 - 1


class SettingsError(ValueError):
    """A sampler setting out of range."""


@dataclass(frozen=True)
class RunSettings:
    """The sampler settings of one run (the Advanced accordion)."""

    steps: int = 20
    guidance: float = 2.0
    seed: int = 0
    scheduler: str = "ddim"

    def __post_init__(self) -> None:
        if not (isinstance(self.steps, int) and 1 <= self.steps <= MAX_STEPS):
            raise SettingsError(f"steps is {self.steps!r}; pick a whole number from 1 to {MAX_STEPS}")
        if not (math.isfinite(self.guidance) and 0.0 <= self.guidance <= MAX_GUIDANCE):
            raise SettingsError(f"guidance is {self.guidance!r}; pick a number from 0 to {MAX_GUIDANCE:g}")
        if not (isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED):
            raise SettingsError(f"seed is {self.seed!r}; pick a whole number from 0 to {MAX_SEED}")
        if self.scheduler not in SCHEDULERS:
            raise SettingsError(f"scheduler is {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")

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

        return cls(whole(steps, "steps", cls.steps), float(cls.guidance if guidance is None else guidance),
                   whole(seed, "seed", cls.seed), scheduler or cls.scheduler)  # fmt: skip


@dataclass(frozen=True)
class Stage:
    """One pipeline call of a run.

    inputs: condition images by slot name ("reference", "upper", "lower") and
        "pose", each (H, W, 3) uint8 on the canvas.
    shown: target slot -> the output name its previews are shown as.
    seed: a fresh generator seeded so; None continues the run's generator.
    carry: the final images of this stage become inputs of the stages after it
        (try-off feeding try-on), kept as tensors so nothing is rounded between them.
    """

    task: str
    inputs: Mapping[str, np.ndarray]
    label: str
    shown: Mapping[str, str]
    seed: int | None = None
    carry: bool = False


@dataclass(frozen=True)
class StageStep:
    """One denoising step of stage `stage`: output name -> (H, W, 3) uint8 canvas image."""

    stage: int
    step: int
    num_steps: int
    final: bool
    images: dict[str, np.ndarray] = field(default_factory=dict)


def sample_stages(pipe: OMFAPipeline, stages: Sequence[Stage], settings: RunSettings) -> Iterator[StageStep]:
    """Stream the stages in order, one `StageStep` per denoising step.

    Closing the iterator closes the pipeline's stream: the work stops within one step.
    """
    generator = torch.Generator(pipe.device).manual_seed(settings.seed)
    carried: dict[str, torch.Tensor] = {}
    for index, stage in enumerate(stages):
        own = generator if stage.seed is None else torch.Generator(pipe.device).manual_seed(stage.seed)
        previews = pipe.stream(stage.task, **stage.inputs, **carried, num_inference_steps=settings.steps,
                               guidance_scale=settings.guidance, scheduler=settings.scheduler, generator=own,
                               output_type="pt")  # fmt: skip
        for preview in previews:
            if preview.final and stage.carry:
                carried.update(preview.images)
            images = {stage.shown[slot]: tensor_to_image(x) for slot, x in preview.images.items()}
            yield StageStep(index, preview.step, preview.num_steps, preview.final, images)
