"""The project's VP timesteps on a rectified-flow backbone.

OMFA samples and trains on a variance-preserving schedule and its denoisers
return x0 (`omfa.diffusion`, `omfa.training.loss`). FLUX was pretrained as a
rectified flow: x_s = (1 - s) x0 + s eps, predicting the velocity v = eps - x0.
The two paths are one path rescaled (Karras et al., EDM, eq. 2 and table 1):
dividing the VP sample x_t = sqrt(abar) x0 + sqrt(1 - abar) eps by
sqrt(abar) + sqrt(1 - abar) gives a flow sample at

    s = sqrt(1 - abar) / (sqrt(abar) + sqrt(1 - abar)),

so a pretrained flow backbone sees the inputs it was trained on, and its
velocity turns into the x0 the sampler previews: x0 = x_s - s v.
"""

from __future__ import annotations

import torch

from omfa.diffusion import NUM_TRAIN_TIMESTEPS, alphas_cumprod


def abar_at(t: torch.Tensor) -> torch.Tensor:
    """alpha-bar of the training schedule at t in [0, 1] (index t * 1000, linearly interpolated)."""
    table = alphas_cumprod().to(t.device, torch.float64)
    idx = (t.double() * NUM_TRAIN_TIMESTEPS).clamp(0, NUM_TRAIN_TIMESTEPS - 1)
    lo = idx.floor().long()
    hi = (lo + 1).clamp(max=NUM_TRAIN_TIMESTEPS - 1)
    frac = idx - lo
    return (table[lo] * (1 - frac) + table[hi] * frac).float()


def vp_to_flow(x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VP sample x_t (B, ...) at t (B,) in [0, 1] -> (flow sample x_s (B, ...), flow time s (B,))."""
    a = abar_at(t)
    scale = a.sqrt() + (1 - a).sqrt()
    s = (1 - a).sqrt() / scale
    view = (-1, *([1] * (x_t.ndim - 1)))
    return x_t / scale.view(view).to(x_t.dtype), s


def x0_from_velocity(x_s: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x0 = x_s - s v for flow sample x_s (B, ...), time s (B,) and velocity v (B, ...)."""
    return x_s - s.view(-1, *([1] * (x_s.ndim - 1))).to(x_s.dtype) * v
