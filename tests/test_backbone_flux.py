"""FluxOMFA: OMFA partial diffusion on a tiny random diffusers FluxTransformer2DModel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
from safetensors.torch import load_file, save_file

from omfa.backbones.flow import vp_to_flow
from omfa.backbones.flux import FluxOMFA
from omfa.backbones.lora import add_lora, train_full
from omfa.canvas import SLOT_INDEX, TASKS
from omfa.denoiser import ConditionKV, OMFATransformer
from omfa.diffusion import alphas_cumprod, make_scheduler
from omfa.pipeline import OMFAPipeline
from omfa.training.batch import Batch
from omfa.training.loss import partial_diffusion_loss

HW = (16, 12)  # pixel canvas (no VAE): 8x6 tokens per slot after 2x2 packing


def tiny_backbone(seed: int = 0, in_channels: int = 12) -> FluxTransformer2DModel:
    """in_channels: slot channels x 2x2 packing (12: the RGB pixel canvas; FLUX.1's 16 latent channels give 64)."""
    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,  # the FLUX.1-dev path; schnell's differs only in the missing guidance embedding
        axes_dims_rope=(4, 6, 6),
    ).eval()


def tiny_model(seed: int = 0) -> FluxOMFA:
    model = FluxOMFA(tiny_backbone(seed), sample_size=HW, num_prompt_tokens=3).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-zero adapter weights, so the tests see the prompt and the pose act
        for p in (model.prompt_embeds, model.pooled_prompt_embeds, model.pose_embedder.weight):
            p.copy_(torch.randn(p.shape, generator=g))
    return model


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_one_slot_without_conditions_is_the_backbones_own_forward(model):
    x_t, t = rand(2, 1, 3, *HW), torch.tensor([0.3, 0.9])
    with torch.no_grad():
        x0 = model(x_t, [SLOT_INDEX["person"]], t)
        x_s, s = vp_to_flow(x_t, t)
        ref = model.backbone(
            hidden_states=model._pack(x_s),
            encoder_hidden_states=model.prompt_embeds.expand(2, -1, -1),
            pooled_projections=model.pooled_prompt_embeds.expand(2, -1),
            timestep=s,
            img_ids=model.position_ids([SLOT_INDEX["person"]]),
            txt_ids=torch.zeros(3, 3),
            guidance=torch.full((2,), model.config.guidance),
        ).sample
    v = (x_s - x0) / s.view(-1, 1, 1, 1, 1)  # x0 = x_s - s v
    assert (model._pack(v) - ref).abs().max() < 1e-4


def test_conditions_run_at_t0_through_the_backbones_modulation_within_their_slot(model):
    """A condition slot's cached values equal FLUX's own forward on that slot alone at timestep 0."""
    cond = rand(1, 1, 3, *HW, seed=3)
    slot = SLOT_INDEX["upper"]
    with torch.no_grad():
        cache = model.encode_conditions(cond, [slot])
        seen = []
        attns = [b.attn for b in (*model.backbone.transformer_blocks, *model.backbone.single_transformer_blocks)]
        hooks = [a.to_v.register_forward_hook(lambda m, i, o: seen.append(o)) for a in attns]
        model.backbone(
            hidden_states=model._pack(cond),
            encoder_hidden_states=torch.zeros(1, 0, 32),  # no text: the slot sees only itself
            pooled_projections=model.pooled_prompt_embeds[None],
            timestep=torch.zeros(1),
            img_ids=model.position_ids([slot]),
            txt_ids=torch.zeros(0, 3),
            guidance=torch.full((1,), model.config.guidance),
        )
        for h in hooks:
            h.remove()
    assert len(seen) == len(cache.layers) == 2
    for (_, v), ref in zip(cache.layers, seen):
        assert (v - ref.unflatten(-1, (2, 16)).transpose(1, 2)).abs().max() < 1e-5
    # the slot's offset is part of its positions: the same image in another slot has other keys
    other = model.encode_conditions(cond, [SLOT_INDEX["lower"]])
    assert (other.layers[0][0] - cache.layers[0][0]).abs().max() > 1e-3


@pytest.mark.parametrize("task", list(TASKS))
def test_cached_and_uncached_agree_for_every_task(model, task):
    targets, conds = TASKS[task].slot_indices()
    b = 2  # both guidance branches: the second drops the guided conditions
    x_t, t = rand(b, len(targets), 3, *HW, seed=1), torch.tensor([0.5, 0.5])
    c = rand(1, len(conds), 3, *HW, seed=2)
    pose = rand(b, 3, *HW, seed=4) if TASKS[task].uses_pose else None
    keep = torch.tensor([[True] * len(conds), [s not in TASKS[task].guidance for s in TASKS[task].conditions]])
    with torch.no_grad():
        uncached = model(x_t, targets, t, c.expand(b, -1, -1, -1, -1), conds, pose, keep)
        # per slot, as the pipeline caches them, then joined
        cache = ConditionKV.cat([model.encode_conditions(c[:, i : i + 1], [s]) for i, s in enumerate(conds)])
        cached = model.forward_cached(x_t, targets, t, cache, pose, keep)
    print(f"{task}: max |cached - uncached| = {(cached - uncached).abs().max().item():.2e}")
    assert (cached - uncached).abs().max() < 1e-5
    assert (uncached[0] - uncached[1]).abs().max() > 1e-3  # dropping conditions changes the prediction


def test_pipeline_streams_with_the_adapter_cached_equals_uncached(model):
    pipe = OMFAPipeline(transformer=model, scheduler=make_scheduler("ddim"))
    rng = np.random.default_rng(0)
    imgs = {k: rng.integers(0, 256, (*HW, 3), dtype=np.uint8) for k in ("reference", "upper", "pose")}

    def run(use_cache):
        steps = pipe.stream(
            "try_on_upper",
            **imgs,
            num_inference_steps=3,
            generator=torch.Generator().manual_seed(0),
            use_cache=use_cache,
            output_type="pt",
        )
        return [s.images["person"] for s in steps]

    cached, uncached = run(True), run(False)
    assert len(cached) == 3
    assert max((a - b).abs().max().item() for a, b in zip(cached, uncached)) < 1e-4


def _batch(seed: int = 0) -> Batch:
    targets, conds = TASKS["try_on_upper"].slot_indices()
    return Batch(
        targets=rand(4, 1, 3, *HW, seed=seed).clamp(-1, 1),
        target_slots=targets,
        conditions=rand(4, 2, 3, *HW, seed=seed + 1).clamp(-1, 1),
        condition_slots=conds,
        pose=rand(4, 3, *HW, seed=seed + 2),
    )


def _train(model: FluxOMFA, params, steps: int) -> list[float]:
    opt = torch.optim.AdamW(params, lr=2e-2, weight_decay=0.0)
    abar, batch, losses = alphas_cumprod(), _batch(), []
    model.train()
    for _ in range(steps):
        # the same draws each step: the loss then measures fitting, not noise
        loss = partial_diffusion_loss(model, batch, torch.Generator().manual_seed(0), abar)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


@pytest.fixture(scope="module")
def lora_model():
    """A LoRA fine-tune of a few steps, with its base weights and losses."""
    model = tiny_model(seed=5)
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    params = add_lora(model, rank=4)
    model.enable_gradient_checkpointing()
    losses = _train(model, params, steps=30)
    model.disable_gradient_checkpointing()
    return model, base, losses


def test_lora_training_lowers_the_loss_and_leaves_the_base_untouched(lora_model):
    model, base, losses = lora_model
    print(f"LoRA loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert losses[-1] < 0.8 * losses[0]
    lora_keys = [k for k in model.backbone.state_dict() if "lora_" in k]
    assert lora_keys
    for key, value in model.backbone.state_dict().items():
        if "lora_" not in key:
            assert torch.equal(value, base[key.replace(".base_layer", "")]), key
    assert all(("lora_" in n) for n, p in model.backbone.named_parameters() if p.requires_grad)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for ckpt in (False, True):
        model = tiny_model(seed=2)
        if ckpt:
            model.enable_gradient_checkpointing()
        partial_diffusion_loss(model, _batch(), torch.Generator().manual_seed(0), alphas_cumprod()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_lora_saved_apart_from_the_base_and_reloaded_gives_the_same_outputs(lora_model, tmp_path):
    model, base, _ = lora_model
    tiny_backbone(seed=5).save_pretrained(tmp_path / "base")  # the pretrained folder the LoRA sits on
    model.register_to_config(base_model=str(tmp_path / "base"))
    model.save_pretrained(tmp_path / "omfa")
    assert sorted(p.name for p in (tmp_path / "omfa").iterdir()) == ["config.json", "lora", "omfa_adapter.safetensors"]
    lora = load_file(tmp_path / "omfa" / "lora" / "adapter_model.safetensors")
    assert lora and all("lora_" in k for k in lora)
    assert json.loads((tmp_path / "omfa" / "config.json").read_text())["_class_name"] == "FluxOMFA"

    loaded = FluxOMFA.from_pretrained(tmp_path / "omfa").eval()
    x_t, t, c = rand(1, 1, 3, *HW, seed=8), torch.tensor([0.4]), rand(1, 2, 3, *HW, seed=9)
    pose = rand(1, 3, *HW, seed=10)
    with torch.no_grad():
        before, after = model(x_t, [0], t, c, [1, 2], pose), loaded(x_t, [0], t, c, [1, 2], pose)
        untrained = FluxOMFA.from_pretrained(tmp_path / "base", sample_size=HW, num_prompt_tokens=3)(
            x_t, [0], t, c, [1, 2], pose
        )
    assert (before - after).abs().max() < 1e-6
    assert (before - untrained).abs().max() > 1e-3  # the LoRA did change the model


def test_pipeline_saves_and_loads_the_adapter(lora_model, tmp_path):
    model, _, _ = lora_model
    tiny_backbone(seed=5).save_pretrained(tmp_path / "base")
    model.register_to_config(base_model=str(tmp_path / "base"))
    OMFAPipeline(transformer=model, scheduler=make_scheduler("ddim")).save_pretrained(tmp_path / "pipe")
    assert not (tmp_path / "pipe" / "transformer" / "transformer").exists()  # LoRA only, no copy of the base
    pipes = [OMFAPipeline(transformer=model, scheduler=make_scheduler("ddim")), OMFAPipeline.load(tmp_path / "pipe")]
    assert isinstance(pipes[1].transformer, FluxOMFA)
    rng = np.random.default_rng(1)
    imgs = {k: rng.integers(0, 256, (*HW, 3), dtype=np.uint8) for k in ("reference",)}
    outs = [
        p("try_off_upper", **imgs, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt")
        for p in pipes
    ]
    assert (outs[0].images["upper"] - outs[1].images["upper"]).abs().max() < 1e-5


def test_full_fine_tune_saves_the_backbone_in_diffusers_layout(tmp_path):
    model = tiny_model(seed=6)
    _train(model, train_full(model), steps=2)
    model.save_pretrained(tmp_path / "full")
    assert (tmp_path / "full" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = FluxOMFA.from_pretrained(tmp_path / "full").eval()
    x_t, t = rand(1, 1, 3, *HW, seed=8), torch.tensor([0.4])
    with torch.no_grad():
        assert (model(x_t, [0], t) - loaded(x_t, [0], t)).abs().max() < 1e-6


def test_a_fixed_prompt_from_a_file_replaces_the_learned_one(tmp_path):
    tiny_backbone().save_pretrained(tmp_path / "base")
    save_file({"prompt_embeds": rand(5, 32), "pooled_prompt_embeds": rand(32, seed=1)}, tmp_path / "prompt.safetensors")
    model = FluxOMFA.from_pretrained(tmp_path / "base", sample_size=HW, prompt_file=tmp_path / "prompt.safetensors")
    assert model.prompt_embeds.shape == (5, 32) and model.config.num_prompt_tokens == 5
    assert torch.equal(model.pooled_prompt_embeds.data, rand(32, seed=1))
    with pytest.raises(ValueError, match=r"prompt_embeds must be \(P, 32\)"):
        model.set_prompt(rand(5, 16), rand(32))


def test_bfloat16_runs_close_to_float32(model):
    x_t, t, c = rand(1, 1, 3, *HW, seed=1), torch.tensor([0.5]), rand(1, 1, 3, *HW, seed=2)
    half = tiny_model().to(torch.bfloat16)
    with torch.no_grad():
        full = model(x_t, [0], t, c, [2])
        low = half.forward_cached(x_t, [0], t, half.encode_conditions(c, [2]))
    assert low.dtype == torch.float32 and (low - full).abs().max() < 0.1 * full.abs().max()


def test_from_pretrained_names_a_missing_or_wrong_folder(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        FluxOMFA.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        FluxOMFA.from_pretrained(tmp_path / "empty")
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="names UNet2DModel"):
        FluxOMFA.from_pretrained(tmp_path / "unet")


def test_pipeline_takes_either_transformer_without_a_type_warning(lora_model, tmp_path):
    """diffusers checks each loaded component against `OMFAPipeline.__init__`'s annotations; both
    transformers load (and construct) without its "Expected types" warning."""
    import logging

    model, _, _ = lora_model
    tiny_backbone(seed=5).save_pretrained(tmp_path / "base")
    model.register_to_config(base_model=str(tmp_path / "base"))
    OMFAPipeline(transformer=model, scheduler=make_scheduler("ddim")).save_pretrained(tmp_path / "flux-pipe")
    OMFAPipeline(
        transformer=OMFATransformer.from_preset("tiny", sample_size=(16, 16)), scheduler=make_scheduler("ddim")
    ).save_pretrained(tmp_path / "omfa-pipe")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # diffusers' loggers do not propagate to pytest's caplog
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        loaded = [OMFAPipeline.load(tmp_path / name) for name in ("flux-pipe", "omfa-pipe")]
    finally:
        logger.removeHandler(handler)
    assert [type(p.transformer) for p in loaded] == [FluxOMFA, OMFATransformer]
    assert not [r.getMessage() for r in records if "Expected types" in r.getMessage()]
