"""bf16, the compiled forward, and a condition cache that never mixes precisions or weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import random_image, tiny_pipe

from omfa.acceleration import bf16_supported, compile_enabled, resolve_dtype


def _run(pipe, images, task="try_on_upper", steps=3, **kwargs):
    inputs = {k: images[k] for k in ("reference", "upper", "pose")}
    if task.startswith("try_off"):
        inputs = {"reference": images["reference"]}
    previews = pipe.stream(
        task,
        **inputs,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
        **kwargs,
    )
    return list(previews)[-1].images


@pytest.fixture
def images():
    rng = np.random.default_rng(3)
    return {k: random_image(rng) for k in ("reference", "upper", "pose")}


def test_precision_settings_resolve_to_dtypes():
    assert resolve_dtype("fp32", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16  # honoured even where emulated
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if bf16_supported("cpu") else torch.float32)
    assert compile_enabled("off", "cpu") is False and compile_enabled("on", "cpu") is True
    with pytest.raises(ValueError, match="choose one of auto, fp32, bf16"):
        resolve_dtype("fp8", "cpu")
    with pytest.raises(ValueError, match="choose one of auto, on, off"):
        compile_enabled("yes", "cpu")


def test_condition_cache_keys_include_autocast_and_weights(images):
    pipe = tiny_pipe()
    plain = _run(pipe, images)["person"]
    misses = pipe.condition_cache.misses
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cached = _run(pipe, images)["person"]
        assert pipe.condition_cache.misses == misses + 2, "an autocast request reused fp32 keys"
        uncached = _run(pipe, images, use_cache=False)["person"]
    assert torch.allclose(cached, uncached, atol=1e-5)
    assert (cached - plain).abs().max() > 1e-3

    # weights updated in place: the old keys are stale
    state = {k: v * 1.1 for k, v in pipe.transformer.state_dict().items()}
    pipe.transformer.load_state_dict(state)
    misses = pipe.condition_cache.misses
    updated = _run(pipe, images)["person"]
    assert pipe.condition_cache.misses == misses + 2
    assert torch.allclose(updated, _run(pipe, images, use_cache=False)["person"], atol=1e-5)
    assert (updated - plain).abs().max() > 1e-3


def test_bf16_pipeline_samples_close_to_fp32(images):
    fp32 = tiny_pipe()
    bf16 = tiny_pipe()
    bf16.transformer.to(torch.bfloat16)
    a, b = _run(fp32, images)["person"], _run(bf16, images)["person"]
    assert b.dtype == torch.float32 and a.shape == b.shape
    assert (a - b).abs().mean() < 0.02  # bf16 has 8 bits of mantissa; the sampler keeps its state in fp32


def test_compiled_forward_matches_eager_and_never_compiles_in_a_request(images):
    eager = tiny_pipe()
    pipe = tiny_pipe()
    compiler = pipe.compile(tasks=["try_on_upper"], background=True)
    before_ready = _run(pipe, images)["person"]  # served eagerly while the warm-up compiles
    assert torch.equal(before_ready, _run(eager, images)["person"])
    deadline = 300
    compiler._ready.wait(deadline)
    assert compiler.ready and compiler.error is None
    compiled = _run(pipe, images)["person"]
    assert (compiled - _run(eager, images)["person"]).abs().max() < 1e-4

    # a task it was not compiled for runs eagerly: same pixels as eager, and no new graph
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    other = _run(pipe, images, task="try_off_upper")["upper"]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames
    assert torch.equal(other, _run(eager, images, task="try_off_upper")["upper"])
