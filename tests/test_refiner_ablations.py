"""The pixel refiner head and the ablation variants' own code paths."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from engine_helpers import HW, random_image, tiny_model
from safetensors.torch import save_file

from omfa.canvas import TASKS
from omfa.data.examples import Case
from omfa.diffusion import make_scheduler
from omfa.pipeline import OMFAPipeline
from omfa.training.ablations import VARIANTS, full_canvas_predictor, variant_config
from omfa.training.loop import CONFIGS, load_init_weights


def _inputs(rng):
    return {k: random_image(rng) for k in ("reference", "upper", "lower", "pose")}


@pytest.mark.parametrize("task", ["try_on_upper", "outfit", "try_off_outfit", "multiview"])
def test_refiner_keeps_the_condition_cache_exact(task):
    pipe = OMFAPipeline(tiny_model(11, refiner_channels=8), make_scheduler("ddim"))
    spec, images = TASKS[task], _inputs(np.random.default_rng(1))
    kwargs = {s: images[s] for s in spec.conditions} | ({"pose": images["pose"]} if spec.uses_pose else {})
    runs = [
        list(
            pipe.stream(
                task,
                **kwargs,
                num_inference_steps=3,
                generator=torch.Generator().manual_seed(0),
                use_cache=cache,
                output_type="pt",
            )
        )
        for cache in (True, False)
    ]
    for slot in spec.targets:
        a, b = runs[0][-1].images[slot], runs[1][-1].images[slot]
        assert torch.allclose(a, b, atol=1e-4) and a.std() > 0.05


def test_refiner_corrects_per_pixel_from_pose_and_noisy_target():
    """The refiner's residual depends on the pose and x_t pixels, not only on the patch head."""
    refiner = tiny_model(12, refiner_channels=8).refiner
    n, f = 2, refiner.features
    coarse, feats = torch.randn(n, 3, *HW), torch.randn(n, f, *HW)
    x_t, pose, cond = torch.randn(n, 3, *HW), torch.randn(n, 3, *HW), torch.randn(n, 64)
    with torch.no_grad():
        base = refiner(coarse, feats, x_t, pose, cond)
        moved_pose = refiner(coarse, feats, x_t, pose.roll(1, dims=-1), cond)
        nudged = x_t.clone()
        nudged[:, :, 10, 10] += 1.0
        local = (refiner(coarse, feats, nudged, pose, cond) - base).abs().amax(dim=(0, 1))
    assert (base - moved_pose).abs().max() > 1e-3
    # a 3-layer 3x3 conv stack: the change stays within 3 pixels of the nudged one
    assert local[10, 10] > 0 and local[:6].max() == 0 and local[15:].max() == 0


def test_growing_a_refiner_leaves_a_trained_model_unchanged(tmp_path):
    plain = tiny_model(13)
    save_file({k: v.contiguous() for k, v in plain.state_dict().items()}, tmp_path / "w.safetensors")
    grown = tiny_model(14, refiner_channels=8)
    for layer in (grown.refiner.out, grown.refiner.film):  # a fresh refiner starts at zero
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    load_init_weights(grown, tmp_path / "w.safetensors")
    x, t, conds, pose = (
        torch.randn(2, 1, 3, *HW),
        torch.tensor([0.2, 0.9]),
        torch.randn(2, 2, 3, *HW),
        torch.randn(2, 3, *HW),
    )
    with torch.no_grad():
        assert torch.equal(plain(x, [0], t, conds, [1, 2], pose), grown(x, [0], t, conds, [1, 2], pose))
    wrong = tiny_model(15, hidden_size=32)
    with pytest.raises(ValueError, match="does not fit"):
        load_init_weights(wrong, tmp_path / "w.safetensors")


def test_pipeline_runs_a_full_condition_attention_model_uncached():
    pipe = OMFAPipeline(tiny_model(16, local_condition_attention=False), make_scheduler("ddim"))
    images = _inputs(np.random.default_rng(2))
    out = pipe.try_on(images["reference"], images["pose"], upper=images["upper"], num_inference_steps=2)
    assert np.asarray(out.images["person"]).std() > 1.0


def test_ablation_variants_change_only_their_switch():
    base = CONFIGS["small-cpu"]
    assert variant_config(base, "partial") == base
    assert variant_config(base, "full-canvas").full_canvas
    assert not variant_config(base, "full-condition-attention").local_condition_attention
    on, off = variant_config(base, "try-on-only").tasks, variant_config(base, "try-off-only").tasks
    assert set(on) | set(off) | {"multiview"} == set(base.tasks) and not set(on) & set(off)
    surface, min_snr = variant_config(base, "surface-pose"), variant_config(base, "min-snr")
    assert surface == replace(base, pose_condition="surface") and min_snr == replace(base, loss_weighting="min_snr")
    both = variant_config(base, "surface-min-snr")
    assert (both.pose_condition, both.loss_weighting) == ("surface", "min_snr")
    assert set(VARIANTS) == {
        "partial",
        "full-canvas",
        "full-condition-attention",
        "try-on-only",
        "try-off-only",
        "surface-pose",
        "min-snr",
        "surface-min-snr",
    }
    with pytest.raises(ValueError, match="unknown ablation"):
        variant_config(base, "no-such")


def test_full_canvas_sampling_uses_the_conditions():
    model = tiny_model(17)
    rng = np.random.default_rng(3)
    images = _inputs(rng)
    region = np.ones(HW, dtype=bool)

    def case(reference):
        inputs = {"reference": reference, "upper": images["upper"], "pose": images["pose"]}
        return Case("try_on_upper", inputs, "person", images["reference"], region, region, None)

    predict = full_canvas_predictor(model, steps=3, seed=0)
    a, again = predict(case(images["reference"])), predict(case(images["reference"]))
    b = predict(case(random_image(rng)))
    assert a.shape == (*HW, 3) and a.dtype == np.uint8
    assert np.array_equal(a, again)  # seeded: the same inputs give the same image
    assert np.abs(a.astype(int) - b.astype(int)).max() > 0  # another portrait changes the result


def test_training_config_chooses_the_head():
    from dataclasses import replace

    from omfa.training.loop import build_model

    assert build_model(CONFIGS["small-cpu"], (128, 96)).refiner is not None  # the shipped preset refines pixels
    assert build_model(replace(CONFIGS["small-cpu"], refiner=False), (128, 96)).refiner is None
