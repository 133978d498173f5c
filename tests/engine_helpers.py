"""Tiny seeded components for engine tests."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderDC, AutoencoderKL, AutoencoderTiny

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


# The sample images of the synthetic format that training reads.
SAMPLE_KEYS = ["reference", "person", "person_same", "pose", "upper_a", "lower_a", "upper_b", "lower_b"]


def fake_dataset(n: int, seed: int = 0, hw: tuple[int, int] = HW) -> list[dict]:
    """Samples in the synthetic format with smooth random colours (learnable, tiny)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        colours = {k: rng.integers(0, 256, (1, 1, 3), dtype=np.uint8) for k in SAMPLE_KEYS}
        sample = {k: np.broadcast_to(c, (*hw, 3)).copy() for k, c in colours.items()}
        sample["meta"] = {"replaced": ["upper", "lower", "both"][i % 3]}
        out.append(sample)
    return out


# Tiny random autoencoders of each class a latent canvas takes: 2x downsampling, 4 latent channels.


def tiny_kl(seed: int = 0, **config) -> AutoencoderKL:
    """A 2-level KL autoencoder: 2x downsampling, 4 latent channels."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
        **config,
    ).eval()


def tiny_taesd(seed: int = 0) -> AutoencoderTiny:
    torch.manual_seed(seed)
    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
    ).eval()


def tiny_dc(seed: int = 0) -> AutoencoderDC:
    torch.manual_seed(seed)
    return AutoencoderDC(
        latent_channels=4,
        attention_head_dim=4,
        encoder_block_types=("ResBlock",) * 2,
        decoder_block_types=("ResBlock",) * 2,
        encoder_block_out_channels=(8, 16),
        decoder_block_out_channels=(8, 16),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        encoder_qkv_multiscales=((), ()),
        decoder_qkv_multiscales=((), ()),
        scaling_factor=0.5,
    ).eval()
