"""The GPU check on this CPU: its bench at tiny size (every piece `omfa bench gpu` calls), and the script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.bench import run

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_bench_runs_at_tiny_size(capsys):
    assert run(["gpu", "--tiny", "--train-steps", "3", "--sample-steps", "2", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    result = json.loads(lines[-1])  # one JSON line of every figure, at the end
    assert result["scale"] == "tiny" and result["weights"] == "random weights" and result["train_steps"] == 3
    assert result["train_canvas_px"] == "32x24" and result["train_latent"] == "16x12"  # the tiny VAE halves
    assert result["train_s_per_step"] > 0 and result["train_loss_finite"] and result["trainable_params_m"] > 0
    for size in ("32x24", "64x48"):
        for cache in ("cached", "uncached"):
            assert result[f"tryon_{size}_{cache}_s"] > 0 and result[f"tryon_{size}_{cache}_images_per_s"] > 0
        assert result[f"tryon_{size}_cached_vs_uncached_max_diff"] < 0.1
    assert any(line.startswith("training: 3 steps of batch 1 at 32x24 px (16x12 latents)") for line in lines)
    assert any(line.startswith("try-on 64x48 px (32x24 latents), 2 steps, cached:") for line in lines)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the script's answer on a machine without a GPU")
def test_the_script_says_clearly_that_there_is_no_gpu():
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "gpu_check: no CUDA GPU here" in done.stderr and "nothing checked" in done.stderr
    with pytest.raises(SystemExit, match="no CUDA GPU here"):
        run(["gpu", "--train-steps", "1"])  # the full-size bench refuses too, before building anything


def test_a_failing_phase_is_reported_and_the_other_still_runs(capsys):
    # zero training steps leave no loss to report: the training phase fails, sampling runs on
    assert run(["gpu", "--tiny", "--train-steps", "0", "--sample-steps", "1", "--json"]) == 1
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["failed"] and result["train_error"].startswith("IndexError")
    assert "sample_error" not in result and result["tryon_64x48_cached_s"] > 0
