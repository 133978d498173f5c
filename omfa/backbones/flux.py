"""FluxOMFA: OMFA partial diffusion on a pretrained diffusers FLUX transformer.

The canvas slots become one token sequence: each slot's latents are packed
into 2x2 patches as FLUX packs them, and its rotary position ids are
(slot offset, row, column), so slots share the pretrained 2-D positions and
differ on the first axis (FLUX Kontext puts its context image at offset 1
the same way). The prompt is a learned embedding (no text encoder at
inference): `prompt_embeds` (P, joint_attention_dim) enters the text stream,
`pooled_prompt_embeds` the timestep embedding.

Targets run at their timestep, conditions at t = 0, each through the blocks'
own adaLN modulation (`omfa.backbones.blocks`); conditions attend only
within their own slot, so `encode_conditions` computes their per-layer keys
and values once and `forward_cached` reuses them at every step, exactly.

The contract is the from-scratch denoiser's (`omfa.denoiser.OMFATransformer`):
`forward`, `encode_conditions`, `forward_cached`, x0 out, t in [0, 1] on the
project's VP schedule (mapped onto FLUX's rectified flow in
`omfa.backbones.flow`), so `omfa.training.loss.partial_diffusion_loss` and
`OMFAPipeline` drive it unchanged.

Shapes: B batch, T target slots, K condition slots, C latent channels,
H x W latent size, p = 2 packing, L = (H/p)(W/p) tokens per slot, D hidden.

Folder layout written by `save_pretrained` (diffusers conventions, safetensors only):
    config.json                 this adapter's config (`base_model`: the base folder)
    omfa_adapter.safetensors    pose embedder and prompt embedding
    lora/                       peft layout: adapter_config.json, adapter_model.safetensors
    transformer/                instead of lora/ for a full fine-tune: the backbone in diffusers layout
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.checkpoint import checkpoint

from omfa.backbones.blocks import Rope, condition_step, target_step
from omfa.backbones.flow import vp_to_flow, x0_from_velocity
from omfa.backbones.lora import has_lora, load_lora, save_lora
from omfa.canvas import PERSON, SLOTS
from omfa.denoiser import ConditionKV
from omfa.diffusion import guided_rows
from omfa.pose.condition import DEFAULT_POSE_CONDITION, check_kind

BACKBONE_CLASS = FluxTransformer2DModel.__name__
ADAPTER_WEIGHTS = "omfa_adapter.safetensors"
LORA_DIR = "lora"
BASE_DIR = "transformer"


def _read_config(folder: Path) -> dict:
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass a local FLUX transformer folder or a saved FluxOMFA folder")
    file = folder / "config.json"
    if not file.is_file():
        raise ValueError(f"{folder} has no config.json; pass a diffusers-layout {BACKBONE_CLASS} or FluxOMFA folder")
    return json.loads(file.read_text())


def _pipeline_folder(folder: Path) -> bool:
    """A whole diffusers pipeline folder (e.g. FLUX.1-schnell as downloaded), whose transformer/ is the backbone."""
    return (folder / "model_index.json").is_file() and (folder / BASE_DIR).is_dir()


def load_backbone(folder: str | os.PathLike, dtype: torch.dtype | None = None) -> FluxTransformer2DModel:
    """A local FluxTransformer2DModel folder (or a FLUX pipeline folder holding transformer/), safetensors only."""
    folder = Path(folder)
    if _pipeline_folder(folder):
        folder = folder / BASE_DIR
    name = _read_config(folder).get("_class_name")
    if name != BACKBONE_CLASS:
        raise ValueError(f"{folder} holds a {name}, not a {BACKBONE_CLASS}; FluxOMFA needs a FLUX.1 transformer")
    return FluxTransformer2DModel.from_pretrained(
        folder, torch_dtype=dtype, use_safetensors=True, local_files_only=True
    )


class FluxOMFA(ModelMixin, ConfigMixin):
    """Partial-diffusion OMFA over a pretrained `FluxTransformer2DModel`, predicting x0 of the target slots."""

    _supports_gradient_checkpointing = True

    def __init__(
        self,
        backbone: FluxTransformer2DModel,
        sample_size: tuple[int, int] = (128, 96),
        patch_size: int = 2,
        num_prompt_tokens: int = 8,
        slot_offsets: tuple[int, ...] = (0, 1, 2, 3),
        guidance: float = 3.5,
        base_model: str | None = None,
        pose_condition: str = DEFAULT_POSE_CONDITION,
    ):
        super().__init__()
        # sample_size is the latent size of one slot (1024x768 px through FLUX's 8x VAE: 128x96);
        # guidance feeds the guidance embedding of guidance-distilled backbones (FLUX.1-dev) and is
        # unused by the others (FLUX.1-schnell); base_model is the folder the base weights come from;
        # pose_condition is the kind of pose map it learned (`omfa.pose.condition`), which the app renders.
        cfg = backbone.config
        h, w = sample_size
        if h % patch_size or w % patch_size:
            raise ValueError(f"sample_size {h}x{w} must be divisible by patch_size {patch_size}")
        if cfg.in_channels % patch_size**2:
            raise ValueError(f"backbone in_channels {cfg.in_channels} is not a multiple of patch_size^2")
        if len(slot_offsets) != len(SLOTS):
            raise ValueError(f"slot_offsets needs one offset per slot {SLOTS}, got {slot_offsets}")
        self.backbone = backbone
        self.grid = (h // patch_size, w // patch_size)
        channels = cfg.in_channels // patch_size**2
        # The config is everything but the backbone (whose own config lives with its weights); the
        # pipeline reads in_channels (the latent canvas is (channels, h, w)) and whether the cache is exact.
        self.register_to_config(
            sample_size=tuple(sample_size),
            patch_size=patch_size,
            num_prompt_tokens=num_prompt_tokens,
            slot_offsets=tuple(slot_offsets),
            guidance=guidance,
            base_model=base_model,
            pose_condition=check_kind(pose_condition),
            in_channels=channels,
            local_condition_attention=True,
        )
        inner = backbone.inner_dim
        # The pose map (encoded like the slots) adds to the person target's tokens; zero at first, so
        # the pretrained backbone starts unchanged.
        self.pose_embedder = nn.Linear(cfg.in_channels, inner)
        nn.init.zeros_(self.pose_embedder.weight)
        nn.init.zeros_(self.pose_embedder.bias)
        self.prompt_embeds = nn.Parameter(torch.zeros(num_prompt_tokens, cfg.joint_attention_dim))
        self.pooled_prompt_embeds = nn.Parameter(torch.zeros(cfg.pooled_projection_dim))
        self.gradient_checkpointing = False

    # -- building --------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        base: str | os.PathLike | None = None,
        torch_dtype: torch.dtype | None = None,
        *,
        sample_size: tuple[int, int] | None = None,
        num_prompt_tokens: int | None = None,
        pose_condition: str | None = None,
        prompt_file: str | os.PathLike | None = None,
        **loader_kwargs: object,
    ) -> FluxOMFA:
        """Build from a local folder; nothing is downloaded.

        `path` is either a pretrained FLUX transformer (or FLUX pipeline)
        folder, giving a fresh adapter for latent slots of `sample_size`, or a
        folder `save_pretrained` wrote, whose base weights come from its
        transformer/ or else from `base` (default: the `base_model` it
        recorded). `prompt_file` (safetensors with `prompt_embeds` (P, J) and
        `pooled_prompt_embeds` (J',)) sets a fixed prompt, e.g. FLUX's own
        encoding of a caption computed once where the text encoders are
        (docs/BACKBONES.md). `loader_kwargs` are the options diffusers'
        pipeline loader passes (use_safetensors, local_files_only, ...):
        loading here is always local and safetensors-only, so they change nothing.
        """
        path = Path(path)
        options = {"sample_size": sample_size, "num_prompt_tokens": num_prompt_tokens, "pose_condition": pose_condition}
        options = {k: v for k, v in options.items() if v is not None}
        saved = None if _pipeline_folder(path) else _read_config(path)
        if saved is None or saved.get("_class_name") == BACKBONE_CLASS:
            model = cls(load_backbone(path, torch_dtype), base_model=str(path), **options)
        elif saved.get("_class_name") == cls.__name__:
            model = cls._load_saved(path, saved, base, torch_dtype, options)
        else:
            raise ValueError(
                f"{path}/config.json names {saved.get('_class_name')}; "
                f"pass a {BACKBONE_CLASS} folder or a {cls.__name__} folder"
            )
        if prompt_file is not None:
            model.set_prompt(**load_file(prompt_file))
        if torch_dtype is not None:  # the backbone loaded in it; the adapter's own weights follow
            for p in (
                model.pose_embedder.weight,
                model.pose_embedder.bias,
                model.prompt_embeds,
                model.pooled_prompt_embeds,
            ):
                p.data = p.data.to(torch_dtype)
        return model

    @classmethod
    def _load_saved(cls, path: Path, saved: dict, base, torch_dtype, options: dict) -> FluxOMFA:
        if (path / BASE_DIR).is_dir():
            base_dir = path / BASE_DIR
        else:
            base_dir = base or saved.get("base_model")
            if base_dir is None:
                raise ValueError(f"{path} holds LoRA weights only; pass base= the FLUX transformer folder they fit")
        init = {k: saved[k] for k in ("sample_size", "patch_size", "num_prompt_tokens", "slot_offsets", "guidance")}
        init["pose_condition"] = saved.get("pose_condition", DEFAULT_POSE_CONDITION)  # saved before it was recorded
        model = cls(load_backbone(base_dir, torch_dtype), base_model=str(base_dir), **{**init, **options})
        if (path / LORA_DIR).is_dir():
            load_lora(model.backbone, path / LORA_DIR)
        own = load_file(path / ADAPTER_WEIGHTS)
        missing = set(model.adapter_state_dict()) - set(own)
        if missing:
            raise ValueError(f"{path / ADAPTER_WEIGHTS} lacks {sorted(missing)}")
        model.load_state_dict(own, strict=False)
        return model

    def set_prompt(self, prompt_embeds: torch.Tensor, pooled_prompt_embeds: torch.Tensor) -> None:
        """Replace the prompt embedding: prompt_embeds (P, joint_attention_dim), pooled (pooled_projection_dim,)."""
        cfg = self.backbone.config
        if prompt_embeds.ndim != 2 or prompt_embeds.shape[1] != cfg.joint_attention_dim:
            raise ValueError(f"prompt_embeds must be (P, {cfg.joint_attention_dim}), got {tuple(prompt_embeds.shape)}")
        if tuple(pooled_prompt_embeds.shape) != (cfg.pooled_projection_dim,):
            raise ValueError(
                f"pooled_prompt_embeds must be ({cfg.pooled_projection_dim},), got {tuple(pooled_prompt_embeds.shape)}"
            )
        like = self.prompt_embeds
        self.prompt_embeds = nn.Parameter(prompt_embeds.to(like.device, like.dtype), like.requires_grad)
        self.pooled_prompt_embeds = nn.Parameter(
            pooled_prompt_embeds.to(like.device, like.dtype), self.pooled_prompt_embeds.requires_grad
        )
        self.register_to_config(num_prompt_tokens=prompt_embeds.shape[0])

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: object) -> None:
        """Write the folder layout of the module docstring; with LoRA the base weights are not copied.

        `kwargs` are the options diffusers' pipeline saver passes (safe_serialization, ...): the
        layout is always safetensors.
        """
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        self.save_config(out)
        save_file({k: v.detach().contiguous() for k, v in self.adapter_state_dict().items()}, out / ADAPTER_WEIGHTS)
        if has_lora(self.backbone):
            if self.config.base_model is None:
                raise ValueError("saving LoRA weights needs base_model: the folder the base weights were loaded from")
            save_lora(self.backbone, out / LORA_DIR)
        else:  # a full fine-tune (or an untouched base): the backbone itself, diffusers layout
            self.backbone.save_pretrained(out / BASE_DIR, safe_serialization=True)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights this adapter adds to the backbone (pose embedder, prompt embedding)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    @property
    def tokens_per_slot(self) -> int:
        return self.grid[0] * self.grid[1]

    # -- tokens ----------------------------------------------------------------

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        # (B, S, C, H, W) -> (B, S*L, C*p*p), FLUX's packing order (channels, then the 2x2 patch)
        p = self.config.patch_size
        b, s, c, h, w = x.shape
        x = x.reshape(b, s, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, s * (h // p) * (w // p), c * p * p)

    def _unpack(self, x: torch.Tensor, slots: int) -> torch.Tensor:
        # (B, T*L, C*p*p) -> (B, T, C, H, W)
        p, c = self.config.patch_size, self.config.in_channels
        gh, gw = self.grid
        x = x.reshape(x.shape[0], slots, gh, gw, c, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(x.shape[0], slots, c, gh * p, gw * p)

    def position_ids(self, slots: Sequence[int]) -> torch.Tensor:
        """Rotary ids (S*L, 3) of the given slots: (slot offset, row, column) per token."""
        gh, gw = self.grid
        rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        grid = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)
        per_slot = [grid + torch.tensor([self.config.slot_offsets[s], 0, 0]) for s in slots]
        return torch.cat(per_slot).to(self.device, torch.float32)

    def _rope(self, ids: torch.Tensor) -> Rope:
        return self.backbone.pos_embed(ids)

    def _temb(self, s: torch.Tensor) -> torch.Tensor:
        """Timestep embedding (B, D) at flow time s (B,), as FLUX's forward computes it."""
        embed = self.backbone.time_text_embed
        dtype = self.dtype
        pooled = self.pooled_prompt_embeds.to(dtype).expand(s.shape[0], -1)
        t = s.to(dtype) * 1000
        if self.backbone.config.guidance_embeds:
            return embed(t, torch.full_like(t, self.config.guidance * 1000), pooled)
        return embed(t, pooled)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.x_embedder(self._pack(x).to(self.dtype))

    def _check(self, x: torch.Tensor, slots: Sequence[int], what: str) -> None:
        c = self.config.in_channels
        h, w = self.config.sample_size
        if x.ndim != 5 or tuple(x.shape[2:]) != (c, h, w) or x.shape[1] != len(slots):
            raise ValueError(f"{what} must have shape (B, {len(slots)}, {c}, {h}, {w}), got {tuple(x.shape)}")

    def _blocks(self) -> list[nn.Module]:
        return [*self.backbone.transformer_blocks, *self.backbone.single_transformer_blocks]

    def _run(self, fn, *args):
        """fn(*args), recomputed in backward under gradient checkpointing."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    # -- conditions --------------------------------------------------------------

    def encode_conditions(self, conditions: torch.Tensor, condition_slots: Sequence[int]) -> ConditionKV:
        """Per-layer keys/values of clean condition slots at t = 0, (B, K, C, H, W) -> ConditionKV."""
        self._check(conditions, condition_slots, "conditions")
        b, k = conditions.shape[:2]
        hc = self._embed(conditions)
        temb0 = self._temb(torch.zeros(b, device=conditions.device))
        rope = self._rope(self.position_ids(condition_slots))
        layers = []
        for block in self._blocks():
            k_, v_, hc = condition_step(block, hc, temb0, rope, k)
            layers.append((k_, v_))
        return ConditionKV(layers, self.tokens_per_slot)

    # -- forward -------------------------------------------------------------------

    def forward(
        self,
        targets: torch.Tensor,
        target_slots: Sequence[int],
        timestep: torch.Tensor,
        conditions: torch.Tensor | None = None,
        condition_slots: Sequence[int] = (),
        pose: torch.Tensor | None = None,
        condition_keep: torch.Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """Predict x0 of the targets without a cache.

        targets (B, T, C, H, W) noisy (VP) target slots; timestep (B,) in [0, 1];
        conditions (B, K, C, H, W) clean; pose (B, C, H, W) joined to the
        person slot; condition_keep (B, K) bool drops conditions per sample.
        Returns x0 (B, T, C, H, W) float32; with `guidance_scale` (rows [0, B/2)
        conditional, [B/2, B) unconditional, as `OMFATransformer.forward`) the
        guided x0 (B/2, T, C, H, W).
        """
        live = None
        if conditions is not None and len(condition_slots):
            self._check(conditions, condition_slots, "conditions")
            live = (conditions, condition_slots)
        x0 = self._denoise(targets, target_slots, timestep, pose, condition_keep, live, None)
        return x0 if guidance_scale is None else guided_rows(x0, guidance_scale)

    def forward_cached(
        self,
        targets: torch.Tensor,
        target_slots: Sequence[int],
        timestep: torch.Tensor,
        cache: ConditionKV | None,
        pose: torch.Tensor | None = None,
        condition_keep: torch.Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """As `forward`, with the conditions' keys/values from `cache` (condition_keep in cached slot order)."""
        if cache is not None and len(cache.layers) != len(self._blocks()):
            raise ValueError(f"cache has {len(cache.layers)} layers, this model {len(self._blocks())}")
        x0 = self._denoise(targets, target_slots, timestep, pose, condition_keep, None, cache)
        return x0 if guidance_scale is None else guided_rows(x0, guidance_scale)

    def _denoise(self, targets, target_slots, timestep, pose, keep, live, cache) -> torch.Tensor:
        self._check(targets, target_slots, "targets")
        if timestep.ndim != 1:
            raise ValueError(f"FluxOMFA takes one timestep per sample, shape (B,); got {tuple(timestep.shape)}")
        b, n_targets = targets.shape[:2]
        n = self.tokens_per_slot
        x_s, s = vp_to_flow(targets.float(), timestep)
        ht = self._embed(x_s)  # (B, T*L, D)
        if pose is not None and PERSON in target_slots:
            i = list(target_slots).index(PERSON)
            pose_tokens = self.pose_embedder(self._pack(pose[:, None]).to(self.dtype))
            ht = torch.cat([ht[:, : i * n], ht[:, i * n : (i + 1) * n] + pose_tokens, ht[:, (i + 1) * n :]], dim=1)
        temb = self._temb(s)
        hp = self.backbone.context_embedder(self.prompt_embeds.to(self.dtype))[None].expand(b, -1, -1)
        rope_p = self._rope(torch.zeros(hp.shape[1], 3, device=self.device))  # FLUX's text ids are zeros
        rope_t = self._rope(self.position_ids(target_slots))
        if live is not None:
            hc = self._embed(live[0])
            temb0 = self._temb(torch.zeros(b, device=targets.device))
            rope_c = self._rope(self.position_ids(live[1]))
            n_cond = len(live[1])
        elif cache is not None:
            cache = cache.expand(b)
            n_cond = cache.num_slots
        mask = None
        if keep is not None and (live is not None or cache is not None):
            own = torch.ones(b, hp.shape[1] + n_targets * n, dtype=torch.bool, device=targets.device)
            mask = torch.cat([own, keep.repeat_interleave(n, dim=1)], dim=1)
        for i, block in enumerate(self._blocks()):
            kc = vc = None
            if live is not None:
                kc, vc, hc = self._run(condition_step, block, hc, temb0, rope_c, n_cond)
            elif cache is not None:
                kc, vc = cache.layers[i]
            hp, ht = self._run(target_step, block, hp, ht, temb, rope_p, rope_t, kc, vc, mask)
        v = self.backbone.proj_out(self.backbone.norm_out(ht, temb))  # FLUX's velocity, (B, T*L, C*p*p)
        return x0_from_velocity(x_s, s, self._unpack(v.float(), n_targets))
