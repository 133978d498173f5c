"""Tiny seeded components for engine tests."""

from __future__ import annotations

import numpy as np
import torch

from omfa.denoiser import OMFATransformer
from omfa.diffusion import make_scheduler
from omfa.pipeline import OMFAPipeline

HW = (32, 24)


def tiny_model(seed: int = 0, **overrides) -> OMFATransformer:
    """A 2-layer model with random non-zero weights everywhere.

    A freshly initialised model is adaLN-Zero (every block the identity, the
    output zero), which would make equality tests vacuous.
    """
    torch.manual_seed(seed)
    model = OMFATransformer.from_preset("tiny", **{"sample_size": HW, **overrides}).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def tiny_pipe(seed: int = 0) -> OMFAPipeline:
    return OMFAPipeline(tiny_model(seed), make_scheduler("ddim"))


def random_image(rng: np.random.Generator, hw: tuple[int, int] = HW) -> np.ndarray:
    return rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
