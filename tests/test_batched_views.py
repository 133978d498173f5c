"""Batched multi-view sampling: views sampled as one batch are the views sampled one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from engine_helpers import random_image, tiny_model

from omfa.diffusion import SCHEDULERS, make_scheduler, sample
from omfa.pipeline import OMFAPipeline, Stage, _stage_batches, multiview_stages

STEPS = 3
# fp32 tiny models: a batch of 6 rows rounds its matmuls differently from a batch of 2, by ~1e-7
ATOL = 1e-5


@pytest.fixture(scope="module")
def pipe():
    # the pixel refiner on: its pose map is per view
    return OMFAPipeline(tiny_model(3, refiner_channels=8), make_scheduler("ddim"))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(5)
    return {k: random_image(rng) for k in ("reference", "upper", "p0", "p1", "p2")}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def one_by_one(pipe, task, conditions, poses, seeds, **options):
    """Every step's x0 of each view sampled alone: [view][step] -> (T, C, H, W)."""
    return [
        [p.images for p in pipe.stream(task, **conditions, pose=pose, generator=seeded(s), output_type="pt", **options)]
        for pose, s in zip(poses, seeds, strict=True)
    ]


def batched(pipe, task, conditions, poses, seeds, **options):
    previews = list(
        pipe.stream_views(
            task, **conditions, poses=poses, generators=[seeded(s) for s in seeds], output_type="pt", **options
        )
    )
    # one preview per view per step, view order within a step
    assert [(p.step, p.view) for p in previews] == [(i, v) for i in range(STEPS) for v in range(len(poses))]
    return [[p.images for p in previews if p.view == v] for v in range(len(poses))]


def assert_close(a, b):
    for view_a, view_b in zip(a, b, strict=True):
        for step_a, step_b in zip(view_a, view_b, strict=True):
            assert step_a.keys() == step_b.keys()
            for slot in step_a:
                torch.testing.assert_close(step_a[slot], step_b[slot], atol=ATOL, rtol=0)


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("guidance", [2.0, 1.0])  # CFG on (two branches per view) and off
def test_batched_views_are_the_views_sampled_alone(pipe, images, scheduler, guidance):
    poses, seeds = [images["p0"], images["p1"], images["p2"]], [4, 5, 6]
    options = {"num_inference_steps": STEPS, "guidance_scale": guidance, "scheduler": scheduler}
    conditions = {"reference": images["reference"]}
    expected = one_by_one(pipe, "multiview", conditions, poses, seeds, **options)
    assert_close(batched(pipe, "multiview", conditions, poses, seeds, **options), expected)
    # views differ (their own pose and noise): the comparison is not vacuous
    assert (expected[0][-1]["person"] - expected[1][-1]["person"]).abs().max() > 0.1


def test_a_view_does_not_change_when_views_are_added(pipe, images):
    conditions = {"reference": images["reference"], "upper": images["upper"]}
    options = {"num_inference_steps": STEPS, "guidance_scale": 2.0}
    alone = batched(pipe, "try_on_upper", conditions, [images["p1"]], [9], **options)
    among = batched(pipe, "try_on_upper", conditions, [images["p0"], images["p1"], images["p2"]], [8, 9, 10], **options)
    assert_close([among[1]], alone)


def test_batched_views_share_one_exact_condition_cache(pipe, images):
    poses, seeds = [images["p0"], images["p1"]], [1, 2]
    conditions = {"reference": images["reference"], "upper": images["upper"]}
    options = {"num_inference_steps": STEPS, "guidance_scale": 2.0}
    pipe.condition_cache.clear()
    cached = batched(pipe, "try_on_upper", conditions, poses, seeds, **options)
    assert pipe.condition_cache.misses == 2 and pipe.condition_cache.hits == 0  # one entry per slot, not per view
    uncached = batched(pipe, "try_on_upper", conditions, poses, seeds, use_cache=False, **options)
    assert_close(cached, uncached)


def test_a_stochastic_sampler_draws_each_rows_noise_from_its_own_generator():
    # DDPM adds fresh noise every step: with one generator per row, row b is the batch-1 sample of generator b.
    def denoise(x, t):
        return 0.5 * x + t[:, None, None, None, None]

    def run(seeds):
        scheduler = DDPMScheduler(prediction_type="sample")
        return list(sample(denoise, (len(seeds), 1, 3, 4, 4), scheduler, 4, [seeded(s) for s in seeds]))[-1].x0

    together = run([3, 4, 5])
    for row, seed in enumerate([3, 4, 5]):
        torch.testing.assert_close(together[row : row + 1], run([seed]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="got 2 generators for a batch of 3"):
        next(sample(denoise, (3, 1, 3, 4, 4), DDPMScheduler(), 2, [seeded(0), seeded(1)]))


def test_which_stages_are_sampled_together(images):
    reference = images["reference"]
    views = multiview_stages(reference, [images["p0"], images["p1"], images["p2"], images["p0"], images["p1"]], seed=3)
    assert _stage_batches(views, 1) == [(0,), (1,), (2,), (3,), (4,)]
    assert _stage_batches(views, 2) == [(0, 1), (2, 3), (4,)]  # bounded
    assert _stage_batches(views, 8) == [(0, 1, 2, 3, 4)]
    other = Stage("multiview", {"reference": images["upper"], "pose": images["p0"]}, seed=1)  # other conditions
    unseeded = Stage("multiview", {"reference": reference, "pose": images["p1"]})  # draws from the run's generator
    carried = Stage("multiview", {"reference": reference, "pose": images["p1"]}, seed=2, carry=True)
    assert _stage_batches([views[0], other, views[1], unseeded, views[2], carried, views[3]], 8) == [
        (0,),
        (1,),
        (2,),
        (3,),
        (4,),
        (5,),
        (6,),
    ]


def test_stream_stages_batches_views_and_names_them(pipe, images):
    poses = [images["p0"], images["p1"], images["p2"]]
    options = {"num_inference_steps": STEPS, "output_type": "pt"}
    stages = multiview_stages(images["reference"], poses, seed=11)
    together = list(pipe.stream_stages(stages, view_batch=2, **options))
    assert [(p.step, p.view, p.stage_index, p.batch) for p in together] == [
        (0, 0, 0, (0, 1)),
        (0, 1, 1, (0, 1)),
        (1, 0, 0, (0, 1)),
        (1, 1, 1, (0, 1)),
        (2, 0, 0, (0, 1)),
        (2, 1, 1, (0, 1)),
        (0, 2, 2, (2,)),
        (1, 2, 2, (2,)),
        (2, 2, 2, (2,)),
    ]
    alone = [p for p in pipe.stream_stages(stages, **options) if p.final]
    finals = [p for p in together if p.final]
    assert [p.view for p in finals] == [p.view for p in alone] == [0, 1, 2]
    assert_close([[p.images] for p in finals], [[p.images] for p in alone])
    with pytest.raises(ValueError, match="view_batch must be an integer >= 1, got 0"):
        next(pipe.stream_stages(stages, view_batch=0))


def test_a_compiled_pipeline_batches_only_the_view_counts_it_compiled(pipe, images, monkeypatch):
    # a batch the compiled forward has no graph for would run eagerly: those views go one by one
    monkeypatch.setattr(pipe, "compiler", pipe.transformer.forward_cached)  # a stand-in: nothing is compiled
    monkeypatch.setattr(pipe, "compiled_view_batches", {("multiview", 2)})
    stages = multiview_stages(images["reference"], [images["p0"], images["p1"], images["p2"]], seed=0)
    assert list(pipe._stage_batches(stages, 2)) == [(0, 1), (2,)]
    assert list(pipe._stage_batches(stages, 3)) == [(0,), (1,), (2,)]


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_the_samplers_draw_no_noise_after_the_initial_noise(name):
    # Deterministic after the first draw: a batched view's steps depend on its own initial noise only.
    shape = (1, 1, 3, 4, 4)
    generator = seeded(2)
    list(sample(lambda x, t: 0.5 * x, shape, make_scheduler(name), 5, [generator]))
    only_the_noise = seeded(2)
    torch.randn(shape, generator=only_the_noise)
    assert torch.equal(generator.get_state(), only_the_noise.get_state())
