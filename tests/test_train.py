"""The training loop: task sampling, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from engine_helpers import fake_dataset
from safetensors.torch import load_file

from omfa.training.loop import CONFIGS, TaskSampler, collate, train


def _cfg(**kw):
    return replace(CONFIGS["tiny-test"], **kw)


def test_task_sampler_only_draws_supporting_samples():
    data = fake_dataset(9)
    sampler = TaskSampler(data, _cfg().tasks, _cfg().task_weights)
    assert len(sampler.supports["try_on_upper"]) == 3 and len(sampler.supports["multiview"]) == 9
    rng = np.random.default_rng(0)
    for _ in range(20):
        task, samples = sampler.draw(rng, 4)
        batch = collate(task, samples, rng)
        assert batch.targets.shape[:2] == (4, len(batch.target_slots))
        if task == "try_on_lower":
            assert all(s["meta"]["replaced"] == "lower" for s in samples)


def test_resumed_training_equals_uninterrupted(tmp_path):
    data = fake_dataset(12)  # tiny HW images: the model's canvas is the data's size
    full = train(_cfg(steps=20), data, tmp_path / "full", log=lambda *_: None)
    interrupted = train(_cfg(steps=20), data, tmp_path / "split", stop_after=7, log=lambda *_: None)
    assert interrupted["step"] == 7
    resumed = train(_cfg(steps=20), data, tmp_path / "split", log=lambda *_: None)
    assert full["step"] == resumed["step"] == 20
    a = load_file(tmp_path / "full" / "checkpoint" / "ema.safetensors")
    b = load_file(tmp_path / "split" / "checkpoint" / "ema.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "full" / "pipeline" / "model_index.json").is_file()
    # a loss logged per task every 5 steps; the interrupted run logged on the same schedule
    assert [h["step"] for h in full["history"]] == [5, 10, 15, 20]
    assert all(np.isfinite(v) for h in full["history"] for v in h["loss"].values())
