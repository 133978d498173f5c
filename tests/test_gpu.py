"""Checks that need a CUDA GPU (`pytest -m gpu`, run by scripts/gpu_check.sh); they skip without one.

Each is a CPU test's counterpart on the GPU in bf16: the FLUX adapter's exact condition cache, a LoRA
training step under bf16 autocast, the shipped pipeline, `omfa train --dry-run` and the GPU bench.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_backbone_flux import HW, _batch, rand, tiny_model

from omfa.canvas import TASKS
from omfa.denoiser import ConditionKV

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh runs these)"),
]
CUDA = torch.device("cuda")


def test_flux_adapter_cached_equals_uncached_on_cuda_in_bf16():
    model = torch.nn.Module.to(tiny_model(), CUDA, torch.bfloat16)
    targets, conds = TASKS["outfit"].slot_indices()
    x_t, t = rand(2, len(targets), 3, *HW, seed=1).to(CUDA), torch.tensor([0.3, 0.8], device=CUDA)
    c, pose = rand(1, len(conds), 3, *HW, seed=2).to(CUDA), rand(2, 3, *HW, seed=3).to(CUDA)
    with torch.no_grad():
        uncached = model(x_t, targets, t, c.expand(2, -1, -1, -1, -1), conds, pose)
        cache = ConditionKV.cat([model.encode_conditions(c[:, i : i + 1], [s]) for i, s in enumerate(conds)])
        cached = model.forward_cached(x_t, targets, t, cache, pose)
    assert uncached.dtype == torch.float32 and torch.isfinite(uncached).all()
    # the same bf16 arithmetic in another order: equal to bf16 rounding
    assert (cached - uncached).abs().max() < 0.02 * uncached.abs().max()


def test_lora_training_step_on_cuda_under_bf16_autocast():
    from omfa.diffusion import alphas_cumprod
    from omfa.training.loop import CONFIGS
    from omfa.training.loss import partial_diffusion_loss
    from omfa.training.models import trainable_parameters

    model = tiny_model(seed=5).to(CUDA)
    cfg = replace(CONFIGS["viton-hd-512"], pretrained="(tiny)", lora_rank=4)
    params = trainable_parameters(cfg, model)
    opt = torch.optim.AdamW(params, lr=2e-2, fused=True)
    batch, abar = _batch().to(CUDA), alphas_cumprod().to(CUDA)
    losses = []
    for _ in range(20):
        with torch.autocast("cuda", torch.bfloat16):
            loss = partial_diffusion_loss(model, batch, torch.Generator(CUDA).manual_seed(0), abar)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert all(p.dtype == torch.float32 and p.is_cuda for p in params)
    assert np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0]


def test_shipped_pipeline_on_cuda_in_bf16_cached_and_uncached():
    from omfa.pipeline import OMFAPipeline

    pipe = OMFAPipeline.load()
    assert pipe.device.type == "cuda" and pipe.transformer.dtype == torch.bfloat16
    rng = np.random.default_rng(0)
    h, w = pipe.canvas_hw
    images = {k: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for k in ("reference", "upper", "pose")}
    outs = [
        pipe(
            "try_on_upper",
            **images,
            num_inference_steps=4,
            use_cache=use_cache,
            output_type="pt",
            generator=torch.Generator(CUDA).manual_seed(0),  # on the model's device, as the app makes it
        ).images["person"]
        for use_cache in (True, False)
    ]
    assert outs[0].shape == (3, h, w) and torch.isfinite(outs[0]).all()
    assert (outs[0] - outs[1]).abs().max() < 0.1  # bf16: cached and uncached round alike to ~1e-2


def test_dry_run_of_the_readme_command_on_cuda(viton_hd, tmp_path, capsys):
    from test_train_scale import flux_pipeline_folder

    from omfa.training.cli import main

    flux = flux_pipeline_folder(tmp_path / "FLUX.1-dev")
    args = ["train", "--config", "viton-hd-1024", "--backbone", "flux", "--pretrained", str(flux), "--vae", str(flux)]
    assert main([*args, "--data", str(viton_hd), "--size", "32x24", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "device cuda" in out and "mixed precision bf16" in out
    assert "dry run: 2 steps; the exported pipeline loads (FluxOMFA, 32x24 px)" in out


def test_the_gpu_bench_at_tiny_size_on_cuda():
    from benchmarks.gpu_check import bench_gpu

    result = bench_gpu(tiny=True, train_steps=3, sample_steps=2, batch_size=2, flux_dir=None, log=lambda *_: None)
    assert result["device"] != "cpu" and result["train_peak_gb"] > 0 and result["train_loss_finite"]
    assert result["tryon_64x48_cached_peak_gb"] > 0 and result["tryon_64x48_cached_vs_uncached_max_diff"] < 0.1
