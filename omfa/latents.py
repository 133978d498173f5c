"""The latent canvas: a diffusers autoencoder from a local folder, its scaling, and cheap previews.

Training (`omfa.training.latents`) and inference (`OMFAPipeline`) both go
through these functions, so an image becomes the same latents in both:

- `load_vae(folder)`: an `AutoencoderKL`, `AutoencoderTiny` or `AutoencoderDC`
  named by the folder's config (`_class_name`); local safetensors only;
- `encode(vae, x)` / `decode(vae, z)`: images in [-1, 1] <-> the model's
  latents z = (latent - shift_factor) * scaling_factor, the diffusers
  convention (FLUX's VAE has a shift; SD's has none; a KL config with
  per-channel latents_mean / latents_std uses those). The KL posterior's
  mode is taken, so an image always gives the same latents;
- `vae_factor(vae)`: pixels per latent cell along each axis;
- `vae_digest(vae)`: a content hash of config and weights (the latent cache's key);
- `LatentRGBMap`: a per-cell linear map latent -> RGB (C x 3 matrix + bias,
  least-squares fitted by `fit_rgb_map`), the cheapest preview decoder;
  `decode_preview(decoder, z, size_hw)` decodes a preview with it or with a tiny
  autoencoder, at the canvas size.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderDC, AutoencoderKL, AutoencoderTiny
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

# The autoencoder classes a latent canvas may use, by the `_class_name` of their config.json.
VAE_CLASSES: dict[str, type[ModelMixin]] = {
    "AutoencoderKL": AutoencoderKL,
    "AutoencoderTiny": AutoencoderTiny,
    "AutoencoderDC": AutoencoderDC,
}


def load_vae(folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> ModelMixin:
    """The autoencoder saved in `folder` (its config.json, or that of its `vae/` subfolder), in eval mode.

    Only local safetensors weights are read. A folder without such a config, or
    one naming another class, raises a ValueError that lists the accepted ones.
    """
    path = Path(folder)
    if not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file():
        path = path / "vae"  # a whole diffusers pipeline folder: its VAE
    config = path / "config.json"
    accepted = ", ".join(VAE_CLASSES)
    if not config.is_file():
        raise ValueError(f"{folder} is not a VAE folder (no config.json); pass a diffusers folder of {accepted}")
    name = json.loads(config.read_text()).get("_class_name")
    if name not in VAE_CLASSES:
        raise ValueError(
            f"{folder} holds a {name or 'model without _class_name'}, not a VAE; pass a folder of {accepted}"
        )
    vae = VAE_CLASSES[name].from_pretrained(path, torch_dtype=dtype, use_safetensors=True, local_files_only=True)
    return vae.eval().requires_grad_(False)


def vae_factor(vae: ModelMixin | None) -> int:
    """Pixels per latent cell along each axis (1 for the pixel canvas, `vae=None`)."""
    if vae is None:
        return 1
    if isinstance(vae, AutoencoderDC):
        return int(vae.spatial_compression_ratio)
    if isinstance(vae, AutoencoderTiny):  # every encoder block after the first has a stride-2 convolution
        return 2 ** (len(vae.config.encoder_block_out_channels) - 1)
    return 2 ** (len(vae.config.block_out_channels) - 1)  # AutoencoderKL: each down block but the last halves


def latent_channels(vae: ModelMixin) -> int:
    return int(vae.config.latent_channels)


def _scale_shift(vae: ModelMixin, like: torch.Tensor) -> tuple[float | torch.Tensor, float | torch.Tensor]:
    """(scale, shift) with z = (latent - shift) * scale: the config's scaling_factor and shift_factor
    (Tiny and KL configs may hold None, DC has no shift), or per channel, where a KL config has
    latents_mean and latents_std, shift = mean and scale = scaling_factor / std (as SDXL's pipeline)."""
    config = vae.config
    scale = float(getattr(config, "scaling_factor", None) or 1.0)
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        per_channel = lambda v: torch.tensor(v, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)  # noqa: E731
        return scale / per_channel(std), per_channel(mean)
    return scale, float(getattr(config, "shift_factor", None) or 0.0)


@torch.no_grad()
def encode(vae: ModelMixin, x: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] -> the model's latents (B, C, H/f, W/f), in the VAE's dtype."""
    out = vae.encode(x.to(vae.device, vae.dtype))
    if isinstance(vae, AutoencoderTiny):
        latent = out.latents
    elif isinstance(vae, AutoencoderDC):
        latent = out.latent
    else:
        latent = out.latent_dist.mode()  # deterministic: the same image gives the same latents
    scale, shift = _scale_shift(vae, latent)
    return (latent - shift) * scale


@torch.no_grad()
def decode(vae: ModelMixin, z: torch.Tensor) -> torch.Tensor:
    """The model's latents (B, C, h, w) -> images (B, 3, h*f, w*f), nominally in [-1, 1]."""
    z = z.to(vae.device, vae.dtype)
    scale, shift = _scale_shift(vae, z)
    return vae.decode(z / scale + shift).sample


def vae_digest(vae: ModelMixin) -> str:
    """Content hash of the VAE's class, config and weights: latents cached under one VAE are never read
    under another (a different folder holding the same weights shares them)."""
    h = hashlib.blake2b(digest_size=16)
    config = {k: v for k, v in vae.config.items() if not k.startswith("_")}
    h.update(type(vae).__name__.encode() + json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        data = tensor.detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode() + data.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class LatentRGBMap(ModelMixin, ConfigMixin):
    """RGB of each latent cell as an affine function of its C channels: (B, C, h, w) -> (B, 3, h, w).

    A latent cell of a VAE mostly encodes the mean colour of its f x f pixels,
    so this 1x1 convolution, fitted by least squares (`fit_rgb_map`), gives a
    blurred but faithful preview for the cost of one matmul per step.
    """

    @register_to_config
    def __init__(self, latent_channels: int = 4):
        super().__init__()
        self.proj = nn.Conv2d(latent_channels, 3, kernel_size=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z.to(self.proj.weight.dtype))


def fit_rgb_map(latents: torch.Tensor, images: torch.Tensor) -> LatentRGBMap:
    """Least-squares `LatentRGBMap` from latents (N, C, h, w) and their images (N, 3, H, W) in [-1, 1].

    The target of each cell is its image's area mean over the cell's f x f
    pixels (`adaptive_avg_pool2d` to (h, w)); the fit solves
    min ||[z, 1] A - rgb||^2 over A (C+1, 3) in float64.
    """
    n, c, h, w = latents.shape
    target = F.adaptive_avg_pool2d(images.double(), (h, w))  # (N, 3, h, w)
    x = latents.double().permute(0, 2, 3, 1).reshape(-1, c)
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)  # (N h w, C + 1)
    y = target.permute(0, 2, 3, 1).reshape(-1, 3)  # (N h w, 3)
    solution = torch.linalg.lstsq(x, y).solution  # (C + 1, 3)
    rgb_map = LatentRGBMap(latent_channels=c)
    with torch.no_grad():
        rgb_map.proj.weight.copy_(solution[:c].T.reshape(3, c, 1, 1).float())
        rgb_map.proj.bias.copy_(solution[c].float())
    return rgb_map.eval().requires_grad_(False)


def is_cheap_decoder(decoder: Any) -> bool:
    """Whether decoding with `decoder` costs little enough to run at every denoising step."""
    return isinstance(decoder, (LatentRGBMap, AutoencoderTiny))


@torch.no_grad()
def decode_preview(decoder: ModelMixin, z: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """A preview of latents z (B, C, h, w) as images (B, 3, H, W) at the canvas size `size_hw`.

    A `LatentRGBMap` gives one colour per latent cell, upsampled bilinearly; an
    autoencoder (a tiny one, or the full VAE) decodes.
    """
    if isinstance(decoder, LatentRGBMap):
        return F.interpolate(decoder(z).float(), size=size_hw, mode="bilinear", align_corners=False)
    return decode(decoder, z)


__all__ = [
    "LatentRGBMap",
    "VAE_CLASSES",
    "decode",
    "encode",
    "fit_rgb_map",
    "is_cheap_decoder",
    "latent_channels",
    "load_vae",
    "decode_preview",
    "vae_digest",
    "vae_factor",
]
