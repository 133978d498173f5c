"""The GPU check's bench (`omfa bench gpu`): FLUX.1-size LoRA training and try-on sampling, timed.

`omfa bench gpu --json` (what `scripts/gpu_check.sh` runs on one GPU):

1. builds FluxOMFA over a FLUX.1-size `FluxTransformer2DModel` (19 double and
   38 single blocks, hidden 3072: 11.9B parameters) with random weights made
   on the GPU in bf16 (no download, no fp32 copy, seconds), and FLUX.1's VAE
   likewise; with `FLUX_DIR` (or `--flux-dir`) pointing at a local FLUX.1
   pipeline folder, its real transformer and VAE instead;
2. trains it as `omfa train --config viton-hd-512` does (`omfa.training.models`:
   LoRA rank 16 in fp32 on the frozen bf16 base, gradient checkpointing, bf16
   autocast, AdamW, `partial_diffusion_loss`) for `--train-steps` steps on a
   random try-on batch of 16-channel latents at 512x384 / 8 = 64x48 per slot:
   s/step, images/s, peak memory;
3. samples a 20-step try-on through `OMFAPipeline` (VAE encode, partial
   diffusion, a linear latent-to-RGB preview per step, the VAE decode at the
   end) at 512x384 and 1024x768, with and without the condition cache: seconds
   per try-on, images/s, peak memory, and the largest cached-uncached difference.

`--tiny` runs the same code on a tiny random FLUX and VAE (CPU or GPU, seconds):
the CPU test of everything the GPU check calls. One JSON line holds all figures.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from omfa.canvas import TASKS

# FLUX.1 [dev]'s transformer and VAE configs (its model card's config.json files): the full size.
FLUX1_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
FLUX1_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=16,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    norm_num_groups=32,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
)


@dataclass(frozen=True)
class Scale:
    """What the check builds: backbone and VAE configs, the training canvas and the sampling sizes (px)."""

    name: str
    transformer: dict
    vae: dict
    train_hw: tuple[int, int]
    sample_hws: tuple[tuple[int, int], ...]
    lora_rank: int


FULL = Scale("FLUX.1", FLUX1_TRANSFORMER, FLUX1_VAE, (512, 384), ((512, 384), (1024, 768)), 16)
TINY = Scale(
    "tiny",
    dict(
        FLUX1_TRANSFORMER,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 6, 6),
    ),
    dict(
        FLUX1_VAE,
        latent_channels=4,
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
    ),
    (32, 24),
    ((32, 24), (64, 48)),
    4,
)


@contextlib.contextmanager
def _built_on(device: torch.device, dtype: torch.dtype):
    """New modules are made directly on `device` in `dtype`: a 12B random model never exists in fp32 on the host."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            yield
    finally:
        torch.set_default_dtype(before)


def build(scale: Scale, device: torch.device, dtype: torch.dtype, flux_dir: str | None, log):
    """(FluxOMFA for the training canvas, the VAE, where they came from)."""
    from diffusers import AutoencoderKL
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel

    from omfa.backbones.flux import FluxOMFA
    from omfa.latents import load_vae, vae_factor

    start = time.perf_counter()
    if flux_dir:
        vae = load_vae(flux_dir, dtype).to(device)
        latent_hw = tuple(n // vae_factor(vae) for n in scale.train_hw)
        model = FluxOMFA.from_pretrained(flux_dir, torch_dtype=dtype, sample_size=latent_hw).to(device)
        source = f"weights from {flux_dir}"
    else:
        torch.manual_seed(0)
        with _built_on(device, dtype):
            vae = AutoencoderKL(**scale.vae).eval().requires_grad_(False)
            latent_hw = tuple(n // vae_factor(vae) for n in scale.train_hw)
            model = FluxOMFA(FluxTransformer2DModel(**scale.transformer), sample_size=latent_hw)
        source = "random weights"
    log(
        f"built {scale.name} FluxOMFA ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{source}) and its VAE on {device} in {dtype} in {time.perf_counter() - start:.1f} s"
    )
    return model, vae, source


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _peak_text(gb: float | None) -> str:
    return "peak memory n/a (CPU)" if gb is None else f"peak {gb} GB"


def _random_batch(model, batch_size: int, seed: int):
    """A try-on batch of random latents at the model's canvas: person target; reference, upper; pose."""
    from omfa.training.batch import Batch

    targets, conds = TASKS["try_on_upper"].slot_indices()
    c, (h, w) = model.config.in_channels, model.config.sample_size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 1 + len(conds) + 1, c, h, w, generator=g).to(model.device)
    return Batch(targets=x[:, :1], target_slots=targets, conditions=x[:, 1:-1], condition_slots=conds, pose=x[:, -1])


def bench_training(
    model, scale: Scale, steps: int, batch_size: int, device: torch.device, log, max_seconds: float = float("inf")
) -> dict:
    """LoRA training steps as `omfa train --config viton-hd-512` takes them; s/step and peak memory.

    Stops after `max_seconds` of steps (the check's time budget); `train_steps_done` says how many ran.
    """
    from omfa.diffusion import alphas_cumprod
    from omfa.training.loop import CONFIGS
    from omfa.training.loss import partial_diffusion_loss
    from omfa.training.models import trainable_parameters

    cfg = replace(CONFIGS["viton-hd-512"], pretrained="(the bench's model)", lora_rank=scale.lora_rank)
    params = trainable_parameters(cfg, model)  # LoRA in fp32 on the frozen base, gradient checkpointing
    opt = torch.optim.AdamW(params, lr=cfg.lr, fused=device.type == "cuda")
    batch, abar, gen = _random_batch(model, batch_size, 0), alphas_cumprod().to(device), torch.Generator(device)
    gen.manual_seed(0)
    model.train()
    _reset_peak(device)
    losses, times = [], []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16):
            loss = partial_diffusion_loss(model, batch, gen, abar, cfg.condition_dropout)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())  # .item() synchronises: the step is done
        times.append(time.perf_counter() - start)
        if sum(times) > max_seconds:
            log(f"training: stopped after {len(times)} of {steps} steps ({max_seconds:.0f} s budget)")
            break
    model.eval()
    # the first steps pay for kernel selection and the allocator's growth: the median is the steady state
    s_step = float(np.median(times[1:] if len(times) > 1 else times))
    trainable = sum(p.numel() for p in params)
    result = {
        "train_steps": steps,
        "train_steps_done": len(times),
        "train_batch": batch_size,
        "train_canvas_px": "x".join(map(str, scale.train_hw)),
        "train_latent": "x".join(map(str, model.config.sample_size)),
        "trainable_params_m": round(trainable / 1e6, 2),
        "train_s_per_step": round(s_step, 4),
        "train_images_per_s": round(batch_size / s_step, 3),
        "train_total_s": round(sum(times), 1),
        "train_peak_gb": _peak_gb(device),
        "train_loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
        "train_loss_finite": bool(np.isfinite(losses).all()),
    }
    log(
        f"training: {steps} steps of batch {batch_size} at {result['train_canvas_px']} px "
        f"({result['train_latent']} latents), {result['trainable_params_m']}M LoRA parameters: "
        f"{s_step:.3f} s/step, {result['train_images_per_s']} images/s, {_peak_text(result['train_peak_gb'])}"
    )
    return result


def _at_size(model, latent_hw: tuple[int, int]):
    """The same backbone and adapter weights for slots of another latent size (FluxOMFA's grid is its config)."""
    from omfa.backbones.flux import FluxOMFA

    cfg = model.config
    other = FluxOMFA(
        model.backbone,
        sample_size=latent_hw,
        num_prompt_tokens=cfg.num_prompt_tokens,
        slot_offsets=tuple(cfg.slot_offsets),
        guidance=cfg.guidance,
        base_model=cfg.base_model,
    )
    other.load_state_dict(model.adapter_state_dict(), strict=False)
    return torch.nn.Module.to(other, model.device, model.dtype).eval()  # plain cast: no fp32-module bookkeeping


def _try_on(pipe, inputs: dict, steps: int, use_cache: bool) -> torch.Tensor:
    """One try-on as a request for new photos runs it (its cache built anew); the person image (3, H, W)."""
    pipe.condition_cache.clear()
    frames = pipe.stream(
        "try_on_upper",
        **inputs,
        num_inference_steps=steps,
        guidance_scale=1.0,  # FLUX.1 [dev] is guidance-distilled: one branch (docs/BACKBONES.md)
        use_cache=use_cache,
        generator=torch.Generator(pipe.device).manual_seed(0),  # on the model's device, as the app makes it
        output_type="pt",
    )
    *_, last = frames
    return last.images["person"]


def bench_sampling(model, vae, scale: Scale, steps: int, device: torch.device, log) -> dict:
    """One try-on per size, uncached and cached (each after a warm-up): seconds, images/s, peak memory."""
    from omfa.diffusion import make_scheduler
    from omfa.latents import LatentRGBMap, latent_channels, vae_factor
    from omfa.pipeline import OMFAPipeline

    model = torch.nn.Module.to(model, torch.bfloat16)  # serving precision: training's fp32 LoRA cast down
    result: dict = {"sample_steps": steps, "sample_guidance_scale": 1.0}
    rng = np.random.default_rng(0)
    for hw in scale.sample_hws:
        latent_hw = tuple(n // vae_factor(vae) for n in hw)
        preview = torch.nn.Module.to(LatentRGBMap(latent_channels(vae)), device, torch.bfloat16)
        pipe = OMFAPipeline(_at_size(model, latent_hw), make_scheduler("ddim"), vae=vae, preview_decoder=preview)
        pipe.condition_cache.max_bytes = 2**36  # FLUX.1's entries at 1024x768 are 2.15 GB per slot
        inputs = {k: rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for k in ("reference", "upper", "pose")}
        outs = {}
        for use_cache in (False, True):
            _try_on(pipe, inputs, 2, use_cache)  # warm-up: kernels, allocator
            _sync(device)
            _reset_peak(device)
            start = time.perf_counter()
            outs[use_cache] = _try_on(pipe, inputs, steps, use_cache)
            _sync(device)
            seconds = time.perf_counter() - start
            tag = f"{hw[0]}x{hw[1]}_{'cached' if use_cache else 'uncached'}"
            result |= {
                f"tryon_{tag}_s": round(seconds, 3),
                f"tryon_{tag}_images_per_s": round(1 / seconds, 3),
                f"tryon_{tag}_peak_gb": _peak_gb(device),
            }
            log(
                f"try-on {hw[0]}x{hw[1]} px ({latent_hw[0]}x{latent_hw[1]} latents), {steps} steps, "
                f"{'cached' if use_cache else 'uncached'}: {seconds:.2f} s, {1 / seconds:.2f} images/s, "
                f"{_peak_text(result[f'tryon_{tag}_peak_gb'])}"
            )
        diff = float((outs[True].float() - outs[False].float()).abs().max())
        result[f"tryon_{hw[0]}x{hw[1]}_cached_vs_uncached_max_diff"] = round(diff, 5)
    return result


def bench_gpu(
    tiny: bool,
    train_steps: int,
    sample_steps: int,
    batch_size: int,
    flux_dir: str | None,
    log=functools.partial(print, flush=True),
    max_train_seconds: float = float("inf"),
) -> dict:
    """The whole check: build, train, sample; one dict of every figure.

    A phase that fails (out of memory, say) leaves its error in `<phase>_error` and the other phase
    still runs: one GPU session gives every figure it can. `failed` is then true.
    """
    scale = TINY if tiny else FULL
    if not tiny and not torch.cuda.is_available():
        raise SystemExit(
            "omfa bench gpu: no CUDA GPU here (torch.cuda.is_available() is False); the FLUX.1-size check "
            "needs one GPU with 80 GB. `omfa bench gpu --tiny` runs the same code at tiny size on this machine."
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    flux_dir = None if tiny else flux_dir
    start = time.perf_counter()
    model, vae, source = build(scale, device, torch.bfloat16, flux_dir, log)
    result = {
        "bench": "gpu",
        "scale": scale.name,
        "weights": source,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "build_s": round(time.perf_counter() - start, 1),
    }
    phases = {
        "train": lambda: bench_training(model, scale, train_steps, batch_size, device, log, max_train_seconds),
        "sample": lambda: bench_sampling(model, vae, scale, sample_steps, device, log),
    }
    for name, phase in phases.items():
        try:
            result |= phase()
        except Exception as error:  # reported in the figures; the next phase still runs
            result[f"{name}_error"] = f"{type(error).__name__}: {error}"[:800]
            log(f"{name}: FAILED: {result[f'{name}_error']}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
    result["failed"] = any(key.endswith("_error") for key in result)
    result["total_s"] = round(time.perf_counter() - start, 1)
    return result


def add_arguments(sub: argparse._SubParsersAction) -> dict:
    """The `gpu` subcommand; returns how to run it from parsed arguments."""
    gpu = sub.add_parser("gpu", help="FLUX.1-size LoRA training and try-on sampling on one GPU (scripts/gpu_check.sh)")
    gpu.add_argument("--tiny", action="store_true", help="a tiny random FLUX and VAE: the same code, on any device")
    gpu.add_argument("--train-steps", type=int, default=200)
    gpu.add_argument("--sample-steps", type=int, default=20)
    gpu.add_argument("--batch-size", type=int, default=1, help="training batch (try-on samples of three slots)")
    gpu.add_argument(
        "--max-train-seconds", type=float, default=180.0, help="stop training after this long (the 8-minute budget)"
    )
    gpu.add_argument(
        "--flux-dir",
        type=Path,
        default=os.environ.get("FLUX_DIR") or None,
        help="a local FLUX.1 pipeline folder (default: $FLUX_DIR); without it, random weights of the same size",
    )
    gpu.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    run = lambda a: bench_gpu(  # noqa: E731
        a.tiny,
        a.train_steps,
        a.sample_steps,
        a.batch_size,
        a.flux_dir and str(a.flux_dir),
        max_train_seconds=a.max_train_seconds,
    )
    return {"gpu": run}
