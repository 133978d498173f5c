"""The partial-diffusion transformer, its condition cache and the pipeline."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from engine_helpers import HW, random_image, tiny_model, tiny_pipe

from omfa.cache import ConditionCache
from omfa.canvas import SLOT_INDEX, TASKS, Role, tensor_to_image
from omfa.data.examples import example_from_sample, sample_tasks
from omfa.denoiser import Block, ConditionKV
from omfa.diffusion import SCHEDULERS, alphas_cumprod, make_scheduler
from omfa.pipeline import OMFAPipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipe()


@pytest.fixture()
def images():
    rng = np.random.default_rng(7)
    return {k: random_image(rng) for k in ("reference", "upper", "lower", "pose")}


def _run(pipe, task, images, use_cache, scheduler="ddim", seed=1, steps=4, guidance=2.0):
    spec = TASKS[task]
    kwargs = {s: images[s] for s in spec.conditions}
    if spec.uses_pose:
        kwargs["pose"] = images["pose"]
    return list(
        pipe.stream(
            task,
            **kwargs,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(seed),
            scheduler=scheduler,
            use_cache=use_cache,
            output_type="pt",
        )
    )


@pytest.mark.parametrize("task", list(TASKS))
def test_cached_and_uncached_sampling_agree_for_every_task(pipe, images, task):
    cached, uncached = _run(pipe, task, images, True), _run(pipe, task, images, False)
    assert len(cached) == len(uncached) == 4
    for a, b in zip(cached, uncached):
        for slot in TASKS[task].targets:
            assert torch.allclose(a.images[slot], b.images[slot], atol=1e-4), (task, slot)
    final = cached[-1].images[TASKS[task].targets[0]]
    assert final.std() > 0.05  # the random model produces a non-trivial image


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_cache_exact_under_every_scheduler(pipe, images, scheduler):
    a = _run(pipe, "outfit", images, True, scheduler)[-1].images["person"]
    b = _run(pipe, "outfit", images, False, scheduler)[-1].images["person"]
    assert torch.allclose(a, b, atol=1e-4)


def test_condition_keys_values_do_not_depend_on_targets(monkeypatch):
    model = tiny_model(3)
    seen: list[list[torch.Tensor]] = []
    original = Block.conditions

    def spy(self, hc, cc, keep, local):
        k, v, h = original(self, hc, cc, keep, local)
        seen[-1] += [k, v]
        return k, v, h

    monkeypatch.setattr(Block, "conditions", spy)
    g = torch.Generator().manual_seed(0)
    conds = torch.randn(1, 2, 3, *HW, generator=g)
    pose = torch.randn(1, 3, *HW, generator=g)
    outputs = []
    for target_seed in (1, 2):
        target = torch.randn(1, 1, 3, *HW, generator=torch.Generator().manual_seed(target_seed))
        seen.append([])
        with torch.no_grad():
            outputs.append(model(target, [0], torch.tensor([0.5]), conds, [1, 2], pose))
    assert not torch.allclose(outputs[0], outputs[1])  # the targets did change the output
    assert len(seen[0]) == 2 * len(model.blocks)
    for a, b in zip(*seen):
        assert torch.equal(a, b)
    # and the cache encoder (which never sees a target) produces the same keys/values
    monkeypatch.setattr(Block, "conditions", original)
    with torch.no_grad():
        kv = model.encode_conditions(conds, [1, 2])
    for (k, v), (k_ref, v_ref) in zip(kv.layers, zip(seen[0][0::2], seen[0][1::2])):
        assert torch.allclose(k, k_ref, atol=1e-6) and torch.allclose(v, v_ref, atol=1e-6)


def test_slots_encoded_separately_equal_jointly():
    model = tiny_model(4)
    conds = torch.randn(1, 2, 3, *HW, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        joint = model.encode_conditions(conds, [1, 2])
        parts = ConditionKV.cat([model.encode_conditions(conds[:, i : i + 1], [s]) for i, s in enumerate([1, 2])])
    for (k1, v1), (k2, v2) in zip(joint.layers, parts.layers):
        assert torch.allclose(k1, k2, atol=1e-6) and torch.allclose(v1, v2, atol=1e-6)


def test_full_condition_attention_ablation_refuses_the_cache():
    model = tiny_model(5, local_condition_attention=False)
    conds = torch.randn(1, 2, 3, *HW)
    with pytest.raises(ValueError, match="not exact"):
        model.encode_conditions(conds, [1, 2])
    out = model(
        torch.randn(1, 1, 3, *HW), [0], torch.tensor([0.3]), conds, [1, 2], None, torch.tensor([[False, False]])
    )
    assert torch.isfinite(out).all()  # every condition dropped: still no NaN from an empty softmax


def test_masked_condition_is_ignored():
    """A dropped (masked) condition has no influence: as if it were absent."""
    model = tiny_model(6)
    g = torch.Generator().manual_seed(1)
    target, ref, garment = (torch.randn(1, 1, 3, *HW, generator=g) for _ in range(3))
    t = torch.tensor([0.7])
    with torch.no_grad():
        only_ref = model(target, [0], t, ref, [1])
        masked = model(target, [0], t, torch.cat([ref, garment], 1), [1, 2], None, torch.tensor([[True, False]]))
        other = model(target, [0], t, torch.cat([ref, -garment], 1), [1, 2], None, torch.tensor([[True, False]]))
    assert torch.allclose(only_ref, masked, atol=1e-5)
    assert torch.allclose(masked, other, atol=1e-5)


def _branch_rows(seed: int):
    """Two guidance branches of one try-on: the same target, timestep and pose, the garment dropped in
    the second row."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(1, 1, 3, *HW, generator=g).expand(2, -1, -1, -1, -1)
    conditions = torch.randn(1, 2, 3, *HW, generator=g).expand(2, -1, -1, -1, -1)
    pose = torch.randn(1, 3, *HW, generator=g).expand(2, -1, -1, -1)
    keep = torch.tensor([[True, True], [True, False]])
    return target, torch.tensor([0.6, 0.6]), conditions, pose, keep


def test_guidance_in_a_plain_head_is_guidance_on_x0():
    model = tiny_model(8)
    target, t, conditions, pose, keep = _branch_rows(2)
    with torch.no_grad():
        both = model(target, [0], t, conditions, [1, 2], pose, keep)
        inside = model(target, [0], t, conditions, [1, 2], pose, keep, 2.5)
        cache = model.encode_conditions(conditions[:1], [1, 2])
        cached = model.forward_cached(target, [0], t, cache, pose, keep, 2.5)
    expected = both[1:] + 2.5 * (both[:1] - both[1:])
    assert inside.shape == (1, 1, 3, *HW)
    assert torch.allclose(inside, expected, atol=1e-5) and torch.allclose(cached, expected, atol=1e-5)


def test_guidance_before_the_refiner_runs_it_once_per_pair():
    model = tiny_model(9, refiner_channels=8)
    with torch.no_grad():  # a refiner far from linear, so that where guidance applies shows
        for p in model.refiner.parameters():
            p.mul_(5)
    target, t, conditions, pose, keep = _branch_rows(3)
    batches = []
    model.refiner.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    with torch.no_grad():
        both = model(target, [0], t, conditions, [1, 2], pose, keep)
        batches.clear()
        at_1 = model(target, [0], t, conditions, [1, 2], pose, keep, 1.0)
        at_0 = model(target, [0], t, conditions, [1, 2], pose, keep, 0.0)
        at_2 = model(target, [0], t, conditions, [1, 2], pose, keep, 2.0)
    assert batches == [1, 1, 1]  # one refiner pass for the pair, not one per branch
    # scale 1 is the conditional branch, scale 0 the unconditional one, exactly as without guidance
    assert torch.allclose(at_1, both[:1], atol=2e-4) and torch.allclose(at_0, both[1:], atol=2e-4)
    # in between the refiner sees the guided estimate, which is not the same as guiding its outputs
    after = both[1:] + 2.0 * (both[:1] - both[1:])
    assert (at_2 - after).abs().max() > 5e-4
    with pytest.raises(ValueError, match="guidance needs conditional and unconditional rows; got a batch of 1"):
        model(target[:1], [0], t[:1], conditions[:1], [1, 2], pose[:1], keep[:1], 2.0)


def test_the_pipeline_refines_each_view_once_per_step():
    pipe = OMFAPipeline(tiny_model(10, refiner_channels=8), make_scheduler("ddim"))
    batches = []
    pipe.transformer.refiner.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    rng = np.random.default_rng(3)
    poses = [random_image(rng) for _ in range(3)]
    views = {"poses": poses, "generators": [torch.Generator().manual_seed(v) for v in range(3)]}
    previews = list(pipe.stream_views("multiview", reference=random_image(rng), **views, num_inference_steps=3))
    assert batches == [3, 3, 3] and len(previews) == 9  # 3 views x 2 branches share 3 refiner rows


def test_same_seed_same_image_other_seed_differs(pipe, images):
    a = _run(pipe, "try_on_upper", images, True, seed=11)[-1].images["person"]
    b = _run(pipe, "try_on_upper", images, True, seed=11)[-1].images["person"]
    c = _run(pipe, "try_on_upper", images, True, seed=12)[-1].images["person"]
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_last_preview_is_the_output(pipe, images):
    out = pipe.try_on(
        images["reference"],
        images["pose"],
        upper=images["upper"],
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(2),
    )
    previews = list(
        pipe.stream(
            "try_on_upper",
            reference=images["reference"],
            upper=images["upper"],
            pose=images["pose"],
            num_inference_steps=3,
            generator=torch.Generator().manual_seed(2),
        )
    )
    assert [p.final for p in previews] == [False, False, True]
    assert np.array_equal(np.asarray(previews[-1].images["person"]), np.asarray(out.images["person"]))
    assert isinstance(out.images["person"], PIL.Image.Image) and out.images["person"].size == (HW[1], HW[0])


def test_save_and_load_give_identical_outputs(pipe, images, tmp_path):
    from omfa.pipeline import OMFAPipeline

    pipe.save_pretrained(tmp_path)
    assert list(tmp_path.glob("transformer/*.safetensors")) and not list(tmp_path.rglob("*.bin"))
    loaded = OMFAPipeline.load(tmp_path)
    a = _run(pipe, "try_off_outfit", images, True, seed=5)[-1].images
    b = _run(loaded, "try_off_outfit", images, True, seed=5)[-1].images
    for slot in ("upper", "lower"):
        assert torch.equal(a[slot], b[slot])


def test_callback_on_step_end_sees_every_step_and_can_stop(pipe, images):
    calls = []

    def callback(p, step, timestep, kwargs):
        calls.append((step, timestep, kwargs["x0"]["upper"].size))
        return {"stop": step == 2}

    out = pipe.try_off(images["reference"], "upper", num_inference_steps=6, callback_on_step_end=callback)
    assert [c[0] for c in calls] == [0, 1, 2]
    assert calls[0][1] > calls[-1][1]  # timesteps decrease
    assert out.extra["steps"] == 3


def test_transfer_and_multiview_share_the_cache(images):
    pipe = tiny_pipe(8)
    out = pipe.transfer(images["upper"], images["reference"], images["pose"], which="both", num_inference_steps=2)
    assert set(out.extra["garments"]) == {"upper", "lower"} and out.task == "outfit"
    pipe.condition_cache.clear()
    rng = np.random.default_rng(0)
    poses = [random_image(rng) for _ in range(4)]
    views = pipe.multiview(images["reference"], poses, num_inference_steps=2)
    assert [v.extra["view"] for v in views] == [0, 1, 2, 3]
    # the four views are one batch (DEFAULT_VIEW_BATCH): one lookup, broadcast to every view
    assert pipe.condition_cache.misses == 1 and pipe.condition_cache.hits == 0
    one_by_one = pipe.multiview(images["reference"], poses, num_inference_steps=2, view_batch=1)
    assert pipe.condition_cache.misses == 1 and pipe.condition_cache.hits == 4
    # a view does not depend on how many others were asked for; batched with others it rounds its
    # matmuls differently (float level), so a pixel may land one uint8 level apart
    again = pipe.multiview(images["reference"], poses[:1], num_inference_steps=2)
    for view in (again[0], one_by_one[0]):
        diff = np.asarray(view.images["person"]).astype(int) - np.asarray(views[0].images["person"])
        assert np.abs(diff).max() <= 1


def test_condition_cache_is_bounded_by_bytes():
    model = tiny_model(9)
    conds = [torch.randn(1, 1, 3, *HW, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    one = model.encode_conditions(conds[0], [1]).nbytes
    cache = ConditionCache(max_bytes=int(2.5 * one))
    for i, c in enumerate(conds):
        cache.get_or_compute(i, lambda c=c: model.encode_conditions(c, [1]))
    assert len(cache) == 2 and cache.nbytes <= cache.max_bytes
    cache.get_or_compute(4, lambda: pytest.fail("the newest entry must still be cached"))
    assert cache.hits == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(task="try_on_upper", reference="R", pose="P"), "needs the upper image"),
        (dict(task="try_on_upper", reference="R", upper="U"), "needs a pose map"),
        (dict(task="try_off_upper", reference="small"), "the model needs 24x32"),
        (dict(task="try_off_upper", reference="rgba"), "mode RGBA"),
        (dict(task="try_off_upper", reference="R", num_inference_steps=0), "num_inference_steps must be"),
        (dict(task="try_off_upper", reference="R", guidance_scale=float("nan")), "guidance_scale"),
        (dict(task="dance", reference="R"), "unknown task 'dance'"),
        (dict(task="try_off_upper", reference="R", scheduler="heun"), "unknown scheduler"),
        (dict(task="try_off_upper", reference=[1, 2]), "must be a PIL image"),
    ],
)
def test_bad_inputs_raise_clear_errors(pipe, images, kwargs, message):
    named = {
        "R": images["reference"],
        "P": images["pose"],
        "U": images["upper"],
        "small": np.zeros((10, 10, 3), np.uint8),
        "rgba": PIL.Image.new("RGBA", (HW[1], HW[0])),
    }
    kwargs = {
        k: named.get(v, v) if isinstance(v, str) and k != "task" and k != "scheduler" else v for k, v in kwargs.items()
    }
    with pytest.raises(ValueError, match=message):
        list(pipe.stream(**kwargs))


def test_vae_latent_canvas_runs_and_caches_exactly(images):
    from diffusers import AutoencoderKL

    from omfa.diffusion import make_scheduler
    from omfa.pipeline import OMFAPipeline

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
    ).eval()
    model = tiny_model(10, sample_size=(16, 12), in_channels=4, pose_channels=4, patch_size=4)
    pipe = OMFAPipeline(model, make_scheduler("ddim"), vae=vae)
    assert pipe.canvas_hw == HW
    a = _run(pipe, "try_on_upper", images, True, steps=2)[-1].images["person"]
    b = _run(pipe, "try_on_upper", images, False, steps=2)[-1].images["person"]
    assert a.shape == (3, *HW) and torch.allclose(a, b, atol=1e-4)


def test_training_examples_fill_the_slots_each_task_needs():
    rng = np.random.default_rng(0)
    keys = ["reference", "person", "person_same", "pose", "upper_a", "lower_a", "upper_b", "lower_b"]
    sample = {k: random_image(rng) for k in keys} | {"meta": {"replaced": "upper"}}
    tasks = sample_tasks(sample)
    assert "try_on_upper" in tasks and "try_on_lower" not in tasks
    for task in tasks:
        ex = example_from_sample(sample, task, rng)
        spec = TASKS[task]
        for slot, role in zip(SLOT_INDEX, ex["roles"].tolist()):
            assert role == int(spec.role(slot))
            filled = ex["images"][SLOT_INDEX[slot]].abs().sum() > 0
            assert filled == (role != Role.ABSENT), (task, slot)
        assert (ex["pose"].abs().sum() > 0) == spec.uses_pose
    ex = example_from_sample(sample, "try_on_upper", rng)
    from omfa.canvas import image_to_tensor

    assert torch.equal(ex["images"][SLOT_INDEX["upper"]], image_to_tensor(sample["upper_b"]))
    assert torch.equal(ex["images"][SLOT_INDEX["person"]], image_to_tensor(sample["person"]))


def test_denoise_once_noises_the_truth_by_the_forward_process(monkeypatch, images):
    pipe = tiny_pipe(5)
    seen = {}

    def spy(targets, target_slots, t, conditions, condition_slots, pose):
        seen.update(targets=targets, slots=target_slots, t=t, conditions=conditions, cslots=condition_slots, pose=pose)
        return targets  # "x0 = x_t": the output shows the noised input

    monkeypatch.setattr(pipe.transformer, "forward", spy)
    out = pipe.denoise_once("try_on_upper", images["lower"], 0.5, generator=torch.Generator().manual_seed(3), **images)
    truth = torch.from_numpy(images["lower"]).permute(2, 0, 1).float() / 127.5 - 1
    abar = alphas_cumprod()[500]
    noise = torch.randn((1, 3, *HW), generator=torch.Generator().manual_seed(3))[0]
    assert torch.allclose(out, abar.sqrt() * truth + (1 - abar).sqrt() * noise, atol=1e-5)
    assert seen["slots"] == [SLOT_INDEX["person"]] and torch.equal(seen["t"], torch.tensor([0.5]))
    ref = torch.from_numpy(images["reference"]).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(seen["conditions"][0, 0], ref)  # conditions clean
    with pytest.raises(ValueError, match="scores one target slot; task try_off_outfit has 2"):
        pipe.denoise_once("try_off_outfit", images["upper"], 0.5, generator=torch.Generator(), **images)
    with pytest.raises(ValueError, match=r"t must be in \[0, 1\], got 1.5"):
        pipe.denoise_once("try_on_upper", images["lower"], 1.5, generator=torch.Generator(), **images)


def test_the_shipped_model_denoises_a_little_noise_and_forgets_the_truth_at_t_1():
    from PIL import Image

    from omfa.studio.context import EXAMPLES_DIR

    pipe = OMFAPipeline.load(EXAMPLES_DIR.parent / "omfa-tiny", device="cpu", precision="fp32")
    # the examples are 3x enlargements of canvas-size renders
    dressed, top, bottom = (
        np.asarray(Image.open(EXAMPLES_DIR / f"{name}.png").convert("RGB").resize((96, 128), Image.BOX))
        for name in ("dressed", "top", "bottom")
    )

    def once(truth, t):
        x0 = pipe.denoise_once("try_off_upper", truth, t, generator=torch.Generator().manual_seed(0), reference=dressed)
        return tensor_to_image(x0)

    from omfa.training.metrics import psnr

    assert psnr(once(top, 0.0), top) > 30  # almost no noise: the truth comes back
    # at t = 1 (abar = 2e-9) x_t is noise: the estimate comes from the conditions alone, whatever the truth
    assert np.abs(once(top, 1.0).astype(int) - once(bottom, 1.0)).max() <= 1
