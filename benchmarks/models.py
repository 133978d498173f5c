"""Seeded stand-in models for the benchmarks when no checkpoint is at hand."""

from __future__ import annotations

import torch

from omfa.denoiser import OMFATransformer
from omfa.diffusion import make_scheduler
from omfa.pipeline import OMFAPipeline

# The shipped checkpoint's slot size (height, width): stand-ins default to it so timings compare.
SHIPPED_SIZE_HW: tuple[int, int] = (128, 96)


def random_weights_pipe(
    preset: str, seed: int, size_hw: tuple[int, int] = SHIPPED_SIZE_HW, scale: float = 0.02
) -> OMFAPipeline:
    """A preset-sized pipeline with seeded non-zero weights (a fresh adaLN-Zero model outputs zeros)."""
    model = OMFATransformer.from_preset(preset, sample_size=tuple(size_hw)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return OMFAPipeline(model, make_scheduler("ddim"))
