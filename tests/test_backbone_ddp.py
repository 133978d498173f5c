"""Two CPU processes train FluxOMFA's LoRA with accelerate (DDP over gloo): the replicas stay identical.

The first test drives the denoiser directly (torchrun and a worker); the second launches `omfa train`
itself through `accelerate launch` and the shipped two-process config, on real-data fixtures.
"""

from __future__ import annotations

import json
import math
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


@pytest.mark.slow  # about 40 s on two shared cores: run with -m slow
def test_accelerate_launch_trains_flux_lora_on_two_processes_with_identical_ranks(tmp_path, dresscode):
    """`accelerate launch` with the shipped two-process CPU config runs `omfa train` on real-data fixtures."""
    import socket

    from safetensors.torch import load_file
    from test_backbone_flux import tiny_backbone

    from omfa.pipeline import OMFAPipeline

    tiny_backbone(seed=3).save_pretrained(tmp_path / "flux")
    with socket.socket() as s:  # a free rendezvous port: other test runs may hold accelerate's default
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    config = HERE.parent / "configs" / "accelerate" / "cpu_2proc.yaml"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    train = ["-m", "omfa", "train", "--config", "dresscode-512", "--size", "16x12", "--mixed-precision", "no"]
    run = ["--pretrained", str(tmp_path / "flux"), "--data", str(dresscode), "--out", str(tmp_path / "run")]
    done = subprocess.run(
        [*launch, "--main_process_port", str(port), *train, *run, "--steps", "3", "--batch-size", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "world size 2 (MULTI_CPU)" in done.stdout
    last = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert last == {"step": 3, "world_size": 2, "replica_spread": 0.0}  # both ranks end with identical weights
    rngs = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["rng_ranks"]
    assert len(rngs) == 2 and rngs[0] != rngs[1]  # each rank resumes its own draws, not the main process's
    lora = load_file(tmp_path / "run" / "checkpoint" / "model.safetensors")
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in lora.items())  # LoRA B starts at zero: it trained
    pipe = OMFAPipeline.load(tmp_path / "run" / "pipeline", device="cpu")
    assert pipe.canvas_hw == (16, 12)


@pytest.mark.slow  # about 30 s for both on two shared cores: run with -m slow
@pytest.mark.parametrize("backbone", ["omfa", "flux"])
def test_two_process_fsdp_trains_like_one_process_and_resumes_exactly(tmp_path, backbone):
    """FSDP2 on two CPU processes: the sharded steps equal the same steps unsharded on both ranks' batches,
    and a checkpoint of the gathered weights and optimiser state resumes to the very same weights."""
    from omfa.pipeline import OMFAPipeline

    out = tmp_path / "fsdp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{HERE.parent}{os.pathsep}{HERE}"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    worker = [str(HERE / "fsdp_worker.py"), backbone, str(out), str(tmp_path / "pipeline")]
    done = subprocess.run([*launch, *worker], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    print(f"FSDP {backbone}: losses {result['losses']}, reference spread {result['reference_spread']}")
    assert result["ranks"] == 2
    assert all(math.isfinite(x) for x in result["losses"])
    assert result["trained"] > 1e-4  # the weights moved
    assert result["reference_spread"] < 1e-6  # sharded gradients averaged as one process over both batches
    assert result["resumed_at"] == 3 and result["lr_epoch"] == 5
    assert result["resume_spread"] == 0.0  # the checkpoint held everything: weights, Adam moments, schedule
    assert result["resumed_losses"] == result["losses"][3:]
    # the gathered checkpoint holds what trains: everything, or the LoRA and adapter over the FLUX base
    assert any("lora_B" in k for k in result["checkpoint_keys"]) == (backbone == "flux")
    assert any(k.startswith("blocks.") for k in result["checkpoint_keys"]) == (backbone == "omfa")
    if backbone == "omfa":
        pipe = OMFAPipeline.load(tmp_path / "pipeline", device="cpu")
        assert pipe.canvas_hw == (16, 16)


@pytest.mark.slow  # about 15 s: run with -m slow
def test_accelerate_launch_with_an_fsdp_config_on_cpus_is_refused_in_one_line(tmp_path, dresscode):
    """accelerate shards only on GPUs: on CPUs `omfa train` under the shipped FSDP config stops with a usage
    error naming the CPU config, not a traceback from accelerate's plugin."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    config = HERE.parent / "configs" / "accelerate" / "fsdp_bf16_omfa.yaml"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    launch += ["--num_processes", "1", "--main_process_port", str(port)]
    train = ["-m", "omfa", "train", "--config", "tiny-test", "--dataset", "dresscode", "--size", "32x24"]
    run = ["--data", str(dresscode), "--out", str(tmp_path / "run"), "--steps", "2"]
    done = subprocess.run([*launch, *train, *run], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "omfa train: error: FSDP needs CUDA GPUs" in done.stderr and "cpu_2proc.yaml" in done.stderr
    assert "no available devices found" not in done.stderr  # refused before accelerate's own failure
