"""The model a training run builds, what of it trains, and what of it a checkpoint holds.

Two backbones (`TrainConfig.backbone`):

- "omfa": the from-scratch slot transformer (`omfa.denoiser.OMFATransformer`)
  of `TrainConfig.preset`, its canvas the training data's image size. Every
  weight trains; an EMA copy is kept and exported (not under FSDP:
  `omfa.training.loop.train`, docs/BACKBONES.md).
- "flux": `omfa.backbones.flux.FluxOMFA` over the FLUX.1 transformer in the
  local folder `TrainConfig.pretrained`. `lora_rank` > 0 freezes the base and
  trains peft LoRA (with the adapter's pose embedder and prompt);
  `lora_rank` 0 is a full fine-tune. Under bf16 / fp16 mixed precision a
  frozen base is loaded in that dtype (FLUX.1 is 11.9B parameters: 23.8 GB
  in bf16, twice that in fp32) and the trained weights are kept in fp32,
  as diffusers' FLUX LoRA example does. There is no EMA: an EMA copy of a
  full fine-tune would add 48 GB of fp32 weights, and LoRA fine-tunes of
  pretrained DiTs (diffusers' examples, OminiControl) train and ship the live
  weights; the exported pipeline holds the last step's weights.

A checkpoint holds the weights that train (all of them for "omfa"; LoRA,
adapter, or for a full fine-tune everything, for "flux"): the frozen base is
read again from `pretrained` on resume, so a LoRA checkpoint stays small.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file
from torch import nn

from omfa.denoiser import OMFATransformer
from omfa.diffusion import make_scheduler

if TYPE_CHECKING:
    from omfa.training.loop import TrainConfig

BACKBONES: tuple[str, ...] = ("omfa", "flux")
PIXEL_CHANNELS = 3  # a slot of the pixel canvas: RGB in [-1, 1]


def check_backbone(name: str) -> str:
    """`name`, or a ValueError that lists the backbones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return name


def weight_dtype(cfg: TrainConfig) -> torch.dtype:
    """The dtype the model is built in: fp32, except a frozen FLUX base under bf16 / fp16 mixed precision."""
    if cfg.backbone == "flux" and cfg.lora_rank > 0:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision, torch.float32)
    return torch.float32


def build_model(cfg: TrainConfig, canvas_hw: tuple[int, int], channels: int = PIXEL_CHANNELS) -> nn.Module:
    """A fresh model for slots of `canvas_hw` (height, width) with `channels` per slot and pose map: the
    training data's image size and RGB on the pixel canvas, its latent size and channels with a VAE."""
    if cfg.backbone == "omfa":
        extra = {} if cfg.refiner else {"refiner_channels": 0}
        if cfg.patch_size is not None:
            extra["patch_size"] = cfg.patch_size
        if channels != PIXEL_CHANNELS:
            extra |= {"in_channels": channels, "pose_channels": channels}
        return OMFATransformer.from_preset(
            cfg.preset,
            sample_size=tuple(canvas_hw),
            pose_condition=cfg.pose_condition,
            local_condition_attention=cfg.local_condition_attention,
            **extra,
        )
    from omfa.backbones.flux import FluxOMFA

    if cfg.pretrained is None:
        raise ValueError("backbone 'flux' needs pretrained weights: pass --pretrained DIR (a local FLUX.1 folder)")
    if cfg.patch_size not in (None, 2):
        raise ValueError(f"patch_size {cfg.patch_size} is the from-scratch model's; FLUX packs 2x2 patches")
    model = FluxOMFA.from_pretrained(
        cfg.pretrained, torch_dtype=weight_dtype(cfg), sample_size=tuple(canvas_hw), pose_condition=cfg.pose_condition
    )
    if model.config.in_channels != channels:
        canvas = "pixels" if channels == PIXEL_CHANNELS else "the VAE's latents"
        raise ValueError(
            f"the transformer in {cfg.pretrained} works on {model.config.in_channels}-channel slots, but this "
            f"canvas has {channels} ({canvas}); FLUX.1 needs its own VAE: pass --vae DIR (e.g. FLUX.1's vae/ folder)"
        )
    return model


def trainable_parameters(cfg: TrainConfig, model: nn.Module) -> list[nn.Parameter]:
    """Set what trains (LoRA, or everything) and gradient checkpointing; returns the parameters to optimise."""
    if cfg.backbone == "omfa":
        if cfg.gradient_checkpointing:
            raise ValueError("gradient checkpointing is for the pretrained backbones; the from-scratch model has none")
        return list(model.parameters())
    from omfa.backbones.lora import add_lora, train_full

    params = add_lora(model, rank=cfg.lora_rank) if cfg.lora_rank > 0 else train_full(model)
    for p in params:  # fp32 master weights under mixed precision; the frozen base stays in its dtype
        p.data = p.data.float()
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return params


def uses_ema(cfg: TrainConfig) -> bool:
    """Whether the run keeps an EMA of the weights (the from-scratch model only: see the module docstring)."""
    return cfg.backbone == "omfa"


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def checkpoint_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of `model`: its whole state for the from-scratch model, else what trains."""
    if isinstance(model, OMFATransformer):
        state = model.state_dict()
    else:
        state = {name: p for name, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().contiguous() for k, v in state.items()}


def load_checkpoint_state(model: nn.Module, path: Path) -> None:
    """Load `checkpoint_state` back; every stored tensor must have its place and every trained one be stored."""
    state = load_file(path)
    if isinstance(model, OMFATransformer):
        model.load_state_dict(state)
        return
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = trained - set(state), set(state) - trained
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit this run's trained weights: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}; resume with the --backbone and --lora-rank it was trained with"
        )
    model.load_state_dict(state, strict=False)


def export_pipeline(
    model: nn.Module, out: Path, vae: nn.Module | None = None, preview_decoder: nn.Module | None = None
) -> None:
    """Save `model` (the EMA for the from-scratch model) as a folder `OMFAPipeline.load` reads (safetensors),
    with the VAE and preview decoder of a latent canvas (in their own dtype: a KL decoder can overflow fp16).

    The from-scratch model is halved to fp16 (half the file); FluxOMFA saves as it trains: LoRA and
    adapter weights only, the base recorded by its folder (`FluxOMFA.save_pretrained`).
    """
    from omfa.pipeline import OMFAPipeline

    if isinstance(model, OMFATransformer):
        model = torch.nn.Module.to(copy.deepcopy(model), torch.float16)  # plain cast: no fp32-module bookkeeping
    OMFAPipeline(model, make_scheduler("ddim"), vae=vae, preview_decoder=preview_decoder).save_pretrained(out)
