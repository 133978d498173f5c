"""Checks that need a CUDA GPU (`pytest -m gpu`, run by scripts/gpu_check.sh); they skip without one.

Each is a CPU test's counterpart on the GPU in bf16: the FLUX adapter's exact condition cache, a LoRA
training step under bf16 autocast, the shipped pipeline, `omfa train --dry-run` and the GPU bench;
and what no CPU can check: `omfa train` under the shipped FSDP configs through `accelerate launch`
(accelerate shards only on GPUs), one process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

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


def _accelerate_launch(config: str, train_args: list[str]) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file configs/accelerate/CONFIG --num_processes 1 -m omfa train ...`."""
    with socket.socket() as s:  # a free rendezvous port: another run may hold accelerate's default
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parent.parent
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(root / "configs" / "accelerate" / config),
    ]
    command = [*launch, "--num_processes", "1", "--main_process_port", str(port), "-m", "omfa", "train", *train_args]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_fsdp_training_of_the_from_scratch_model_saves_resumes_and_exports_on_cuda(viton_hd, tmp_path):
    """The shipped FSDP2 config through `accelerate launch`: the loop gathers the sharded weights and optimiser
    state into a checkpoint and a pipeline, keeps no EMA, and a second launch resumes from the checkpoint."""
    from safetensors.torch import load_file

    from omfa.pipeline import OMFAPipeline

    run = tmp_path / "run"
    args = ["--config", "tiny-test", "--dataset", "viton-hd", "--size", "32x24", "--data", str(viton_hd)]
    args += ["--out", str(run), "--batch-size", "2", "--mixed-precision", "bf16"]
    first = _accelerate_launch("fsdp_bf16_omfa.yaml", [*args, "--steps", "4"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert "world size 1 (FSDP)" in first.stdout and "FSDP: no EMA" in first.stdout
    at_4 = load_file(run / "checkpoint" / "model.safetensors")
    assert not (run / "checkpoint" / "ema.safetensors").exists()
    second = _accelerate_launch("fsdp_bf16_omfa.yaml", [*args, "--steps", "6"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert "from step 4 to 6" in second.stdout
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 6
    at_6 = load_file(run / "checkpoint" / "model.safetensors")
    assert at_4.keys() == at_6.keys() and any((at_4[k] - at_6[k]).abs().max() > 0 for k in at_4)
    assert all(torch.isfinite(v).all() for v in at_6.values())
    assert OMFAPipeline.load(run / "pipeline", device="cuda").canvas_hw == (32, 24)


def test_fsdp_training_of_a_flux_lora_on_cuda(dresscode, tmp_path):
    """The shipped FLUX FSDP2 config on the tiny FLUX: the LoRA trains, its checkpoint and pipeline hold it."""
    from safetensors.torch import load_file
    from test_backbone_flux import tiny_backbone

    from omfa.pipeline import OMFAPipeline

    tiny_backbone(seed=3).save_pretrained(tmp_path / "flux")
    args = ["--config", "dresscode-512", "--size", "16x12", "--pretrained", str(tmp_path / "flux")]
    args += ["--data", str(dresscode), "--out", str(tmp_path / "run"), "--steps", "3", "--batch-size", "2"]
    done = _accelerate_launch("fsdp_bf16.yaml", args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "world size 1 (FSDP)" in done.stdout
    lora = load_file(tmp_path / "run" / "checkpoint" / "model.safetensors")
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in lora.items())  # LoRA B starts at zero: it trained
    assert OMFAPipeline.load(tmp_path / "run" / "pipeline", device="cuda").canvas_hw == (16, 12)
