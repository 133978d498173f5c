"""Multi-stage runs: the plans (`try_on_stages`, `multiview_stages`) and the one runner's seeding and carry rules."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from engine_helpers import random_image, tiny_pipe

from omfa.canvas import tensor_to_image
from omfa.pipeline import Stage, multiview_stages, try_on_stages

STEPS = 3


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipe(4)


@pytest.fixture()
def images():
    rng = np.random.default_rng(11)
    return {k: random_image(rng) for k in ("reference", "dressed", "upper", "lower", "pose", "pose_2")}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_try_on_plans(images):
    flat = try_on_stages(images["reference"], images["pose"], upper=images["upper"])
    assert [(s.task, s.name, s.carry, s.seed) for s in flat] == [("try_on_upper", "try_on", False, None)]
    mixed = try_on_stages(
        images["reference"], images["pose"], upper=images["upper"], take_off=[(images["dressed"], "lower")]
    )
    assert [(s.task, s.name, s.carry) for s in mixed] == [
        ("try_off_lower", "try_off", True),
        ("outfit", "try_on", False),
    ]
    assert set(mixed[1].inputs) == {"reference", "pose", "upper"}  # the bottom comes from the try-off
    both = try_on_stages(images["reference"], images["pose"], take_off=[(images["dressed"], "both")])
    assert [s.task for s in both] == ["try_off_outfit", "outfit"]
    with pytest.raises(ValueError, match="two garments were given for the upper"):
        try_on_stages(
            images["reference"], images["pose"], upper=images["upper"], take_off=[(images["dressed"], "both")]
        )
    with pytest.raises(ValueError, match="which must be one of upper, lower, both, got 'hat'"):
        try_on_stages(images["reference"], images["pose"], take_off=[(images["dressed"], "hat")])
    with pytest.raises(ValueError, match="try-on needs a garment"):
        try_on_stages(images["reference"], images["pose"])


def test_multiview_plans(images):
    views = multiview_stages(images["reference"], [images["pose"], images["pose_2"]], seed=5)
    assert [(s.task, s.view, s.seed) for s in views] == [("multiview", 0, 5), ("multiview", 1, 6)]
    dressed = multiview_stages(images["reference"], [images["pose"]], lower=images["lower"])
    assert dressed[0].task == "try_on_lower" and set(dressed[0].inputs) == {"reference", "pose", "lower"}
    with pytest.raises(ValueError, match="multiview needs at least one pose map"):
        multiview_stages(images["reference"], [])


def test_transfer_is_try_off_then_try_on_with_one_generator_and_unrounded_garments(pipe, images):
    generator = seeded(3)
    off = list(
        pipe.stream(
            "try_off_upper",
            reference=images["dressed"],
            num_inference_steps=STEPS,
            generator=generator,
            output_type="pt",
        )
    )[-1]
    on = pipe(
        "try_on_upper",
        reference=images["reference"],
        pose=images["pose"],
        upper=off.images["upper"],
        num_inference_steps=STEPS,
        generator=generator,
    )  # the same generator, the garment as a tensor
    out = pipe.transfer(
        images["dressed"], images["reference"], images["pose"], "upper", num_inference_steps=STEPS, generator=seeded(3)
    )
    assert np.array_equal(np.asarray(out.images["person"]), np.asarray(on.images["person"]))
    assert np.array_equal(np.asarray(out.extra["garments"]["upper"]), tensor_to_image(off.images["upper"]))


def test_every_preview_names_its_stage(pipe, images):
    previews = list(
        pipe.stream_transfer(
            images["dressed"], images["reference"], images["pose"], "both", num_inference_steps=2, generator=seeded(0)
        )
    )
    assert [(p.stage, p.stage_index, p.task, p.step, p.final) for p in previews] == [
        ("try_off", 0, "try_off_outfit", 0, False),
        ("try_off", 0, "try_off_outfit", 1, True),
        ("try_on", 1, "outfit", 0, False),
        ("try_on", 1, "outfit", 1, True),
    ]
    tensors = list(
        pipe.stream_multiview(
            images["reference"], [images["pose"], images["pose_2"]], seed=1, num_inference_steps=2, output_type="pt"
        )
    )
    # the two views are sampled as one batch: each step yields a preview of each view
    assert [(p.step, p.view, p.stage_index, p.batch) for p in tensors] == [
        (0, 0, 0, (0, 1)),
        (0, 1, 1, (0, 1)),
        (1, 0, 0, (0, 1)),
        (1, 1, 1, (0, 1)),
    ]
    assert isinstance(tensors[-1].images["person"], torch.Tensor)


def test_a_seeded_stage_is_independent_of_the_run_generator(pipe, images):
    # View k of a multi-view run is the single task seeded seed + k, whatever came before it
    # (one after another here: batched, it agrees to float rounding, tests/test_batched_views.py).
    views = pipe.multiview(
        images["reference"], [images["pose"], images["pose_2"]], seed=7, num_inference_steps=STEPS, view_batch=1
    )
    alone = pipe(
        "multiview",
        reference=images["reference"],
        pose=images["pose_2"],
        num_inference_steps=STEPS,
        generator=seeded(8),
    )
    assert np.array_equal(np.asarray(views[1].images["person"]), np.asarray(alone.images["person"]))
    stages = [
        Stage("multiview", {"reference": images["reference"], "pose": images["pose"]}),
        Stage("multiview", {"reference": images["reference"], "pose": images["pose_2"]}, seed=8),
    ]
    finals = [p for p in pipe.stream_stages(stages, num_inference_steps=STEPS, generator=seeded(123)) if p.final]
    assert np.array_equal(np.asarray(finals[1].images["person"]), np.asarray(alone.images["person"]))


def test_closing_a_run_closes_the_stage_being_sampled(pipe, images, monkeypatch):
    opened = []
    stream = pipe.stream_views  # every stage (or batch of views) is sampled by one stream_views

    def recorded(*args, **kwargs):
        opened.append(stream(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(pipe, "stream_views", recorded)
    stages = try_on_stages(images["reference"], images["pose"], take_off=[(images["dressed"], "upper")])
    run = pipe.stream_stages(stages, num_inference_steps=50, generator=seeded(0))
    assert next(run).stage == "try_off"
    run.close()
    # The stage's own stream is closed at once (the sampler stops), not left to the garbage collector.
    assert len(opened) == 1 and inspect.getgeneratorstate(opened[0]) == inspect.GEN_CLOSED
