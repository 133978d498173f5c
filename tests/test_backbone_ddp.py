"""Two CPU processes train FluxOMFA's LoRA with accelerate (DDP over gloo): the replicas stay identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow  # about 35 s on two shared cores: run with -m slow
def test_two_process_lora_training_keeps_the_replicas_identical(tmp_path):
    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{HERE.parent}{os.pathsep}{HERE}"}
    # torchrun, which `accelerate launch` uses for several GPUs; on CPUs accelerate picks gloo from its env vars
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*launch, str(HERE / "ddp_lora_worker.py"), str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    print(f"2-process LoRA: loss {result['losses'][0]:.4f} -> {result['losses'][-1]:.4f}, spread {result['spread']}")
    assert result["ranks"] == 2
    assert result["spread"] == 0.0  # DDP averaged the gradients: both ranks took the same steps
    assert result["losses"][-1] < 0.9 * result["losses"][0]
