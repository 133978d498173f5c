"""Noise schedule, the partial-diffusion training loss, and the sampling loop.

The sampler is a pure loop over a `denoise(x_t, t) -> x0` callable (the
k-diffusion contract): it knows nothing of slots, caches or guidance, which
the pipeline folds into the callable. Schedulers are stock diffusers ones
configured for x0 prediction (`prediction_type="sample"`), so each step's
model output *is* the Tweedie estimate E[x0 | x_t] that the app previews.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from omfa.canvas import Role

NUM_TRAIN_TIMESTEPS = 1000
BETA_SCHEDULE = "squaredcos_cap_v2"  # cosine: keeps low-noise steps informative at small resolutions

SCHEDULERS: dict[str, Callable[[], SchedulerMixin]] = {
    # set_alpha_to_one: the last DDIM step lands exactly on the model's x0.
    "ddim": lambda: DDIMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule=BETA_SCHEDULE, prediction_type="sample",
        clip_sample=False, set_alpha_to_one=True, timestep_spacing="linspace"),
    "dpm++": lambda: DPMSolverMultistepScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule=BETA_SCHEDULE, prediction_type="sample",
        algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", timestep_spacing="linspace"),
    "euler": lambda: EulerDiscreteScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule=BETA_SCHEDULE, prediction_type="sample",
        timestep_spacing="linspace"),
}


def make_scheduler(name: str = "ddim") -> SchedulerMixin:
    """A fresh scheduler (schedulers hold per-run state: never share one between requests)."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name]()


def alphas_cumprod() -> torch.Tensor:
    """alpha-bar_t for t = 0..999 of the shared training schedule."""
    return make_scheduler("ddim").alphas_cumprod.clone()


# ----------------------------------------------------------------------------
# Training


def add_noise(x0: torch.Tensor, t_index: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps  (DDPM eq. 4); t_index (B,) integer."""
    a = abar.to(x0.device)[t_index].view(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@dataclass
class Batch:
    """One training batch of a single task configuration (slots fixed per batch).

    targets (B, T, C, H, W) and conditions (B, K, C, H, W) are clean images,
    pose (B, Cp, H, W) or None, condition_keep (B, K) bool.
    """

    targets: torch.Tensor
    target_slots: list[int]
    conditions: torch.Tensor | None
    condition_slots: list[int]
    pose: torch.Tensor | None
    condition_keep: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        move = lambda x: None if x is None else x.to(device)  # noqa: E731
        return Batch(move(self.targets), self.target_slots, move(self.conditions), self.condition_slots,
                     move(self.pose), move(self.condition_keep))


def partial_diffusion_loss(
    model: Callable[..., torch.Tensor],
    batch: Batch,
    generator: torch.Generator,
    abar: torch.Tensor,
    condition_dropout: float = 0.1,
    full_canvas: bool = False,
) -> torch.Tensor:
    """x0-prediction MSE on the noised target slots only.

    Conditions stay clean (timestep 0); each condition is dropped per sample
    with probability `condition_dropout` so the model also learns the
    unconditional branches that guidance needs. `full_canvas=True` is the
    ablation that noises every slot at one timestep (conditions included) and
    still scores only the targets.
    """
    x0 = batch.targets
    b = x0.shape[0]
    device = x0.device
    t_index = torch.randint(0, NUM_TRAIN_TIMESTEPS, (b,), generator=generator, device=device)
    noise = torch.randn(x0.shape, generator=generator, device=device)
    x_t = add_noise(x0, t_index, noise, abar)
    t = t_index.float() / NUM_TRAIN_TIMESTEPS
    conditions, keep = batch.conditions, batch.condition_keep
    if conditions is not None:
        k = conditions.shape[1]
        drop = torch.rand(b, k, generator=generator, device=device) < condition_dropout
        keep = ~drop if keep is None else keep & ~drop
    if full_canvas and conditions is not None:
        # Every slot is a target at the same timestep; the model sees the noisy
        # conditions as extra targets and the loss still scores the real targets.
        cond_noise = torch.randn(conditions.shape, generator=generator, device=device)
        noisy_cond = add_noise(conditions, t_index, cond_noise, abar)
        everything = torch.cat([x_t, noisy_cond], dim=1)
        pred = model(everything, batch.target_slots + batch.condition_slots, t, None, (), batch.pose)
        pred = pred[:, : x0.shape[1]]
    else:
        pred = model(x_t, batch.target_slots, t, conditions, batch.condition_slots, batch.pose, keep)
    return F.mse_loss(pred.float(), x0.float())


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
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
) -> Iterator[SampleStep]:
    """Run the reverse process, yielding the x0 estimate after every step.

    `denoise(x_t, t)` gets the VP-scaled noisy targets and t in [0, 1] (a
    tensor of shape (B,)) and returns x0. The last step's preview is the
    result: the final step runs the scheduler down to t = 0, where a sample is
    its own x0, and yields that sample as the last preview, so the streamed
    preview and the output are one tensor (DDIM with alpha_0 = 1 and Euler land
    exactly on the model's x0; DPM-Solver++ adds its multistep correction).
    """
    if num_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_steps}")
    scheduler.set_timesteps(num_steps, device=device)
    x = torch.randn(shape, generator=generator, device=device) * scheduler.init_noise_sigma
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


def roles_to_slots(roles: tuple[Role, ...]) -> tuple[list[int], list[int]]:
    """(target slot indices, condition slot indices) from per-slot roles."""
    targets = [i for i, r in enumerate(roles) if r == Role.TARGET]
    conditions = [i for i, r in enumerate(roles) if r == Role.CONDITION]
    return targets, conditions
