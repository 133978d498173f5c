"""Noise schedule, schedulers, the sampling loop and classifier-free guidance.

The sampler is a pure loop over a `denoise(x_t, t) -> x0` callable (the
k-diffusion contract): it knows nothing of slots, caches or guidance, which
the pipeline folds into the callable. Schedulers are stock diffusers ones
configured for x0 prediction (`prediction_type="sample"`), so each step's
model output *is* the Tweedie estimate E[x0 | x_t] that the app previews.
The forward process (`add_noise`) is here too, shared by training
(`omfa.training.loss`, the partial-diffusion loss) and the pipeline's one-step
diagnostic (`OMFAPipeline.denoise_once`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

NUM_TRAIN_TIMESTEPS = 1000
BETA_SCHEDULE = "squaredcos_cap_v2"  # cosine: keeps low-noise steps informative at small resolutions

SCHEDULERS: dict[str, Callable[[], SchedulerMixin]] = {
    # set_alpha_to_one: the last DDIM step lands exactly on the model's x0.
    "ddim": lambda: DDIMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule=BETA_SCHEDULE,
        prediction_type="sample",
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="linspace",
    ),
    "dpm++": lambda: DPMSolverMultistepScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule=BETA_SCHEDULE,
        prediction_type="sample",
        algorithm_type="dpmsolver++",
        solver_order=2,
        final_sigmas_type="zero",
        timestep_spacing="linspace",
    ),
    "euler": lambda: EulerDiscreteScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule=BETA_SCHEDULE,
        prediction_type="sample",
        timestep_spacing="linspace",
    ),
}


def make_scheduler(name: str = "ddim") -> SchedulerMixin:
    """A fresh scheduler (schedulers hold per-run state: never share one between requests)."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name]()


def alphas_cumprod() -> torch.Tensor:
    """alpha-bar_t for t = 0..999 of the shared training schedule."""
    return make_scheduler("ddim").alphas_cumprod.clone()


def add_noise(x0: torch.Tensor, t_index: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps  (DDPM eq. 4); t_index (B,) integer."""
    a = abar.to(x0.device)[t_index].view(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


# ----------------------------------------------------------------------------
# Sampling


@dataclass
class SampleStep:
    """One denoising step: `x0` is the Tweedie preview (B, T, C, H, W)."""

    index: int
    num_steps: int
    timestep: float
    x: torch.Tensor  # the noisy sample the model saw (scheduler space)
    x0: torch.Tensor
    final: bool


def sample(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
    scheduler: SchedulerMixin,
    num_steps: int,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    device: torch.device | str = "cpu",
) -> Iterator[SampleStep]:
    """Run the reverse process, yielding the x0 estimate after every step.

    `denoise(x_t, t)` gets the VP-scaled noisy targets and t in [0, 1] (a
    tensor of shape (B,)) and returns x0. The last step's preview is the
    result: the final step runs the scheduler down to t = 0, where a sample is
    its own x0, and yields that sample as the last preview, so the streamed
    preview and the output are one tensor (DDIM with alpha_0 = 1 and Euler land
    exactly on the model's x0; DPM-Solver++ adds its multistep correction).

    `generator` is one generator for the whole batch, or one per batch row
    (a batch of independent samples, e.g. the views of a gallery): row b's
    initial noise, and any noise the scheduler draws per step (diffusers'
    `randn_tensor` takes the same list), then come from generator b alone, so
    a row is the sample its generator gives at batch 1 whatever the other rows.
    (The project's SCHEDULERS draw no noise after the first: DDIM with eta 0,
    Euler without churn, DPM-Solver++ of the ODE kind.)
    """
    if num_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_steps}")
    scheduler.set_timesteps(num_steps, device=device)
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}; pass one per row")
        # (B, ...) from B draws of (1, ...): row b is what generator b alone draws at batch 1
        noise = torch.cat([torch.randn((1, *shape[1:]), generator=g, device=device) for g in generator])
        generator = generator[0] if len(generator) == 1 else list(generator)
    else:
        noise = torch.randn(shape, generator=generator, device=device)
    x = noise * scheduler.init_noise_sigma
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        x_in = scheduler.scale_model_input(x, t)
        t_model = torch.full((shape[0],), float(t) / NUM_TRAIN_TIMESTEPS, device=device)
        x0 = denoise(x_in, t_model)
        last = i == len(timesteps) - 1
        x_next = scheduler.step(x0, t, x, generator=generator).prev_sample
        yield SampleStep(i, len(timesteps), float(t), x, x_next if last else x0, last)
        x = x_next


def guided(x0_cond: torch.Tensor, x0_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on the x0 estimate: x0_u + s (x0_c - x0_u)."""
    return x0_uncond + scale * (x0_cond - x0_uncond)


def guided_rows(x: torch.Tensor, scale: float) -> torch.Tensor:
    """`guided` of a branch-major batch: rows [0, B/2) conditional, [B/2, B) unconditional -> B/2 rows."""
    if x.shape[0] % 2:
        raise ValueError(f"guidance needs conditional and unconditional rows; got a batch of {x.shape[0]}")
    half = x.shape[0] // 2
    return guided(x[:half], x[half:], scale)
