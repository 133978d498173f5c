"""The slot transformer that denoises the target slots of a canvas.

Shapes: B batch, T target slots, K condition slots, L tokens per slot
(= (H/p) * (W/p)), D hidden size, N heads, d = D / N.

Attention follows the partial-diffusion structure: a condition token attends
only within its own slot, a target token attends to every present token
(targets and conditions). A condition's hidden states therefore depend only on
its own image and slot, never on the timestep or on the target, so its
per-layer keys and values can be computed once per request and reused at every
denoising step (`encode_conditions` + `forward_cached`). `forward` runs the
same blocks without the cache; the two agree to float rounding.

Conditioning is per token through adaLN-Zero (DiT): each slot's modulation
comes from its own timestep (conditions: t = 0), its role and its slot id.
The network predicts x0 directly, so every step's output is the Tweedie
estimate E[x0 | x_t, conditions] that the app streams.

Classifier-free guidance can run inside the head (`guidance_scale=`): the batch
holds the conditional rows, then the unconditional ones, and the two branches'
final hidden states are combined before the patch head and the pixel refiner,
which then run once per pair. The patch head and the refiner's feature
projection are linear in the hidden state, so this is exactly guidance on the
coarse x0 and on the refiner's features; only the refiner's own nonlinearity
sees the guided estimate instead of each branch. The refiner was a quarter of a
cached step per branch, and a model without one gives x0_u + s (x0_c - x0_u).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from omfa.canvas import PERSON, Role
from omfa.diffusion import guided_rows


@dataclass(frozen=True)
class DenoiserPreset:
    hidden_size: int
    depth: int
    num_heads: int
    patch_size: int
    mlp_ratio: float = 4.0
    refiner_channels: int = 0  # 0: plain linear unpatchify head


PRESETS: dict[str, DenoiserPreset] = {
    "tiny": DenoiserPreset(hidden_size=64, depth=2, num_heads=2, patch_size=8),  # tests: seconds
    # the shipped CPU model: sized so that a useful model trains in a few CPU hours
    "small": DenoiserPreset(hidden_size=192, depth=6, num_heads=3, patch_size=8, refiner_channels=32),
    "medium": DenoiserPreset(hidden_size=256, depth=8, num_heads=4, patch_size=8, refiner_channels=32),
    "base": DenoiserPreset(hidden_size=768, depth=12, num_heads=12, patch_size=4),  # GPUs
}


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position table (h*w, dim), as in MAE / DiT."""
    if dim % 4:
        raise ValueError(f"hidden size {dim} must be divisible by 4 for 2-D positions")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        angles = coord[:, None] * omega[None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


def timestep_features(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (scaled to 0..1000 like DDPM indices)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[..., None] * 1000.0 * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


@dataclass
class ConditionKV:
    """Per-layer keys/values of condition tokens: layers x (k, v), each (B, N, Lc, d)."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    tokens_per_slot: int

    @property
    def num_slots(self) -> int:
        return self.layers[0][0].shape[2] // self.tokens_per_slot

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)

    @staticmethod
    def cat(parts: Sequence[ConditionKV]) -> ConditionKV:
        """Join slots along the token axis (exact: condition slots never attend to each other)."""
        layers = [
            (torch.cat([p.layers[i][0] for p in parts], dim=2), torch.cat([p.layers[i][1] for p in parts], dim=2))
            for i in range(len(parts[0].layers))
        ]
        return ConditionKV(layers, parts[0].tokens_per_slot)

    def expand(self, batch: int) -> ConditionKV:
        """Broadcast a batch-1 cache to `batch` (views, no copy)."""
        if self.layers[0][0].shape[0] == batch:
            return self
        return ConditionKV(
            [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.layers], self.tokens_per_slot
        )


class Block(nn.Module):
    """DiT block with adaLN-Zero, split into a condition half and a target half."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # x (B, S, L, D) -> q, k, v each (B, S, N, L, d)
        b, s, l, dim = x.shape
        q, k, v = self.qkv(x).view(b, s, l, 3, self.heads, dim // self.heads).permute(3, 0, 1, 4, 2, 5)
        return q, k, v

    def _finish(self, h, attn, gate1, shift2, scale2, gate2):
        # attn (B, S, N, L, d) -> residual updates of h (B, S, L, D)
        b, s, n, l, d = attn.shape
        h = h + gate1 * self.proj(attn.permute(0, 1, 3, 2, 4).reshape(b, s, l, n * d))
        return h + gate2 * self.mlp(modulate(self.norm2(h), shift2, scale2))

    def conditions(self, hc: torch.Tensor, cc: torch.Tensor, keep: torch.Tensor | None, local: bool):
        """Condition slots through the block.

        hc (B, K, L, D) hidden states, cc (B, K, D) conditioning, keep (B, K)
        which slots are present (only used by the full-attention ablation).
        Returns k, v (B, N, K*L, d) for the targets and the next hc.
        """
        b, kslots, l, _ = hc.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(cc).unsqueeze(2).chunk(6, dim=-1)
        q, k, v = self._qkv(modulate(self.norm1(hc), shift1, scale1))
        if local:  # each slot is its own sequence: (B*K, N, L, d)
            flat = lambda t: t.reshape(b * kslots, *t.shape[2:])  # noqa: E731
            attn = F.scaled_dot_product_attention(flat(q), flat(k), flat(v)).view_as(q)
        else:  # ablation: conditions attend to every present condition token
            seq = lambda t: t.permute(0, 2, 1, 3, 4).reshape(b, self.heads, kslots * l, -1)  # noqa: E731
            # A dropped slot still sees itself, so it never becomes an empty softmax (NaN)
            # that masked-out values could carry into the targets.
            same = torch.eye(kslots, dtype=torch.bool, device=hc.device)
            allowed = same[None] | (torch.ones_like(same)[None] if keep is None else keep[:, None, :])
            mask = allowed.repeat_interleave(l, dim=1).repeat_interleave(l, dim=2)[:, None]
            attn = F.scaled_dot_product_attention(seq(q), seq(k), seq(v), attn_mask=mask)
            attn = attn.view(b, self.heads, kslots, l, -1).permute(0, 2, 1, 3, 4)
        k_out = k.permute(0, 2, 1, 3, 4).reshape(b, self.heads, kslots * l, -1)
        v_out = v.permute(0, 2, 1, 3, 4).reshape(b, self.heads, kslots * l, -1)
        return k_out, v_out, self._finish(hc, attn, gate1, shift2, scale2, gate2)

    def targets(self, ht: torch.Tensor, ct: torch.Tensor, k_ctx, v_ctx, ctx_mask: torch.Tensor | None):
        """Target slots attend to themselves and to the condition keys/values.

        ht (B, T, L, D), ct (B, T, D); k_ctx, v_ctx (B, N, Lc, d) or None;
        ctx_mask (B, Lc) bool, False for masked condition tokens.
        """
        b, t, l, _ = ht.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(ct).unsqueeze(2).chunk(6, dim=-1)
        q, k, v = self._qkv(modulate(self.norm1(ht), shift1, scale1))
        seq = lambda x: x.permute(0, 2, 1, 3, 4).reshape(b, self.heads, t * l, -1)  # noqa: E731
        q, k, v = seq(q), seq(k), seq(v)
        mask = None
        if k_ctx is not None:
            k, v = torch.cat([k, k_ctx], dim=2), torch.cat([v, v_ctx], dim=2)
            if ctx_mask is not None:
                own = torch.ones(b, t * l, dtype=torch.bool, device=ht.device)
                mask = torch.cat([own, ctx_mask], dim=1)[:, None, None, :]
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        attn = attn.view(b, self.heads, t, l, -1).permute(0, 2, 1, 3, 4)
        return self._finish(ht, attn, gate1, shift2, scale2, gate2)


class PixelRefiner(nn.Module):
    """A small full-resolution conv net that corrects the patch head's x0.

    A patch transformer predicts each p x p patch through one linear map, so
    its x0 shows seams at patch borders and cannot follow a silhouette inside
    a patch. The refiner sees, per pixel, the coarse x0, features the head
    unpatchifies, the noisy target (which carries the exact detail at low
    noise) and the pose map, and adds a residual. It works on each target slot
    alone, so conditions and their cache are untouched. Its last conv starts at
    zero: a refiner added to a trained model leaves its output unchanged.
    """

    def __init__(
        self, hidden_size: int, patch_size: int, in_channels: int, pose_channels: int, channels: int, features: int = 8
    ):
        super().__init__()
        self.features = features
        self.to_features = nn.Linear(hidden_size, features * patch_size**2)
        self.film = nn.Linear(hidden_size, 2 * channels)  # the slot's timestep sets how much to trust x_t
        stem_in = features + 2 * in_channels + pose_channels
        self.stem = nn.Conv2d(stem_in, channels, 3, padding=1)
        self.mid = nn.Conv2d(channels, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, in_channels, 3, padding=1)
        for conv in (self.stem, self.mid):
            nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5))
        for layer in (self.film, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, coarse, features, x_t, pose, cond):
        """coarse, x_t (N, C, H, W); features (N, F, H, W); pose (N, Cp, H, W); cond (N, D) -> x0."""
        h = self.stem(torch.cat([coarse, features, x_t, pose], dim=1))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = F.gelu(h * (1 + scale) + shift)
        h = F.gelu(self.mid(h))
        return coarse + self.out(h)


class OMFATransformer(ModelMixin, ConfigMixin):
    """Partial-diffusion slot transformer predicting x0 of the target slots."""

    @register_to_config
    def __init__(
        self,
        sample_size: tuple[int, int] = (128, 96),
        in_channels: int = 3,
        pose_channels: int = 3,
        patch_size: int = 8,
        hidden_size: int = 256,
        depth: int = 8,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        num_slots: int = 4,
        local_condition_attention: bool = True,
        refiner_channels: int = 0,
        pose_condition: str = "parts",
    ):
        super().__init__()
        # pose_condition names the map joined to the person slot (omfa.pose.condition.POSE_CONDITIONS);
        # the model only stores it, so whoever renders pose maps for it renders the kind it learned.
        h, w = sample_size
        if h % patch_size or w % patch_size:
            raise ValueError(f"sample_size {h}x{w} must be divisible by patch_size {patch_size}")
        self.grid = (h // patch_size, w // patch_size)
        patch_dim = in_channels * patch_size**2
        self.x_embed = nn.Linear(patch_dim, hidden_size)
        self.pose_embed = nn.Linear(pose_channels * patch_size**2, hidden_size)
        self.register_buffer("pos", sincos_2d(*self.grid, hidden_size), persistent=False)
        self.slot_embed = nn.Embedding(num_slots, hidden_size)
        self.role_embed = nn.Embedding(2, hidden_size)  # Role.TARGET, Role.CONDITION
        self.t_embed = nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.blocks = nn.ModuleList(Block(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.out = nn.Linear(hidden_size, patch_dim)
        self._init_weights()
        # built after _init_weights, which would zero its feature projection
        self.refiner = (
            PixelRefiner(hidden_size, patch_size, in_channels, pose_channels, refiner_channels)
            if refiner_channels
            else None
        )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> OMFATransformer:
        """Build a randomly initialised model from a named size preset."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**asdict(PRESETS[name]), **overrides})

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.slot_embed.weight, std=0.02)
        nn.init.normal_(self.role_embed.weight, std=0.02)
        for block in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        for m in (self.ada_out[-1], self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def tokens_per_slot(self) -> int:
        return self.grid[0] * self.grid[1]

    # -- embedding ---------------------------------------------------------

    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, S, C, H, W) -> (B, S, L, C*p*p)
        p = self.config.patch_size
        b, s, c, h, w = x.shape
        x = x.reshape(b, s, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, s, (h // p) * (w // p), c * p * p)

    def _unpatchify(self, x: torch.Tensor, channels: int | None = None) -> torch.Tensor:
        # x (B, T, L, C*p*p) -> (B, T, C, H, W)
        p, c = self.config.patch_size, channels or self.config.in_channels
        gh, gw = self.grid
        b, t = x.shape[:2]
        x = x.reshape(b, t, gh, gw, c, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, t, c, gh * p, gw * p)

    def _embed(self, images, slots: Sequence[int], role: Role, timestep: torch.Tensor, pose):
        """images (B, S, C, H, W), timestep (B, S) -> tokens (B, S, L, D), conditioning (B, S, D)."""
        dtype = self.x_embed.weight.dtype
        slot_ids = torch.tensor(list(slots), device=images.device)
        tokens = self.x_embed(self._patchify(images.to(dtype))) + self.pos.to(dtype)
        tokens = tokens + self.slot_embed(slot_ids)[None, :, None, :]
        if pose is not None and PERSON in slots:
            i = list(slots).index(PERSON)
            pose_tokens = self.pose_embed(self._patchify(pose[:, None].to(dtype)))[:, 0]
            tokens = torch.cat([tokens[:, :i], (tokens[:, i] + pose_tokens)[:, None], tokens[:, i + 1 :]], dim=1)
        role_ids = torch.full((len(slots),), int(role), device=images.device)
        cond = self.t_embed(timestep_features(timestep).to(dtype))
        cond = cond + self.slot_embed(slot_ids)[None] + self.role_embed(role_ids)[None]
        return tokens, cond

    def _embed_targets(self, targets, target_slots: Sequence[int], timestep: torch.Tensor, pose):
        """Checked target tokens and conditioning; timestep (B,) is shared by all targets, (B, T) is per slot."""
        self._check(targets, target_slots, "targets")
        b, t = targets.shape[:2]
        timestep = timestep.expand(b, t) if timestep.ndim == 2 else timestep[:, None].expand(b, t)
        return self._embed(targets, target_slots, Role.TARGET, timestep, pose)

    def _check(self, x: torch.Tensor, slots: Sequence[int], what: str) -> None:
        c = self.config.in_channels
        h, w = self.config.sample_size
        if x.ndim != 5 or tuple(x.shape[2:]) != (c, h, w) or x.shape[1] != len(slots):
            raise ValueError(f"{what} must have shape (B, {len(slots)}, {c}, {h}, {w}), got {tuple(x.shape)}")

    # -- conditions ----------------------------------------------------------

    def encode_conditions(self, conditions: torch.Tensor, condition_slots: Sequence[int]) -> ConditionKV:
        """Per-layer keys/values of clean condition slots, (B, K, C, H, W) -> ConditionKV.

        Exact to cache only with slot-local condition attention: then a slot's
        keys/values depend on that slot's image alone.
        """
        if not self.config.local_condition_attention:
            raise ValueError("this model attends across conditions (an ablation); its condition cache is not exact")
        self._check(conditions, condition_slots, "conditions")
        b, k = conditions.shape[:2]
        zeros = torch.zeros(b, k, device=conditions.device)
        hc, cc = self._embed(conditions, condition_slots, Role.CONDITION, zeros, None)
        layers = []
        for block in self.blocks:
            k_, v_, hc = block.conditions(hc, cc, None, local=True)
            layers.append((k_, v_))
        return ConditionKV(layers, self.tokens_per_slot)

    # -- forward -----------------------------------------------------------

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

        targets (B, T, C, H, W) noisy target slots; timestep (B,) or (B, T) in
        [0, 1]; conditions (B, K, C, H, W) clean; pose (B, Cp, H, W) joined to
        the person slot; condition_keep (B, K) bool drops conditions per sample
        (classifier-free guidance). Returns x0 (B, T, C, H, W); with
        `guidance_scale`, rows [0, B/2) are the conditional branch and [B/2, B)
        the unconditional one (same targets, timesteps and pose, their own
        condition_keep), and the result is the guided x0 (B/2, T, C, H, W).
        """
        ht, ct = self._embed_targets(targets, target_slots, timestep, pose)
        b = targets.shape[0]
        if conditions is None or not len(condition_slots):
            for block in self.blocks:
                ht = block.targets(ht, ct, None, None, None)
            return self._head(ht, ct, targets, target_slots, pose, guidance_scale)
        self._check(conditions, condition_slots, "conditions")
        k = conditions.shape[1]
        hc, cc = self._embed(
            conditions, condition_slots, Role.CONDITION, torch.zeros(b, k, device=targets.device), None
        )
        ctx_mask = None if condition_keep is None else condition_keep.repeat_interleave(self.tokens_per_slot, dim=1)
        local = self.config.local_condition_attention
        for block in self.blocks:
            k_, v_, hc = block.conditions(hc, cc, condition_keep, local)
            ht = block.targets(ht, ct, k_, v_, ctx_mask)
        return self._head(ht, ct, targets, target_slots, pose, guidance_scale)

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
        """As `forward`, with the conditions' keys/values taken from `cache`.

        condition_keep (B, K) refers to the cached slots in their cached order.
        """
        ht, ct = self._embed_targets(targets, target_slots, timestep, pose)
        b = targets.shape[0]
        ctx_mask = None
        if cache is not None:
            cache = cache.expand(b)
            if condition_keep is not None:
                ctx_mask = condition_keep.repeat_interleave(cache.tokens_per_slot, dim=1)
        for i, block in enumerate(self.blocks):
            k_, v_ = cache.layers[i] if cache is not None else (None, None)
            ht = block.targets(ht, ct, k_, v_, ctx_mask)
        return self._head(ht, ct, targets, target_slots, pose, guidance_scale)

    def _head(self, ht, ct, targets, target_slots: Sequence[int], pose, guidance_scale=None) -> torch.Tensor:
        """Final adaLN, the linear patch head and, if configured, the pixel refiner -> x0 (B, T, C, H, W);
        with `guidance_scale`, the guided x0 of the two branches (module docstring) -> (B/2, T, C, H, W)."""
        shift, scale = self.ada_out(ct).unsqueeze(2).chunk(2, dim=-1)
        h = modulate(self.norm_out(ht), shift, scale)
        if guidance_scale is not None:
            h = guided_rows(h, guidance_scale)  # on the hidden state; the head is linear in it
            # the branches share targets, timesteps (so ct) and pose: the conditional rows stand for both
            views = h.shape[0]
            ct, targets = ct[:views], targets[:views]
            pose = None if pose is None else pose[:views]
        coarse = self._unpatchify(self.out(h))
        if self.refiner is None:
            return coarse.float()
        b, t, c, hh, ww = coarse.shape
        feats = self._unpatchify(self.refiner.to_features(h), self.refiner.features)
        pose_px = torch.zeros(b, t, self.config.pose_channels, hh, ww, dtype=coarse.dtype, device=coarse.device)
        if pose is not None and PERSON in target_slots:
            pose_px[:, list(target_slots).index(PERSON)] = pose.to(coarse.dtype)
        flat = lambda x: x.reshape(b * t, *x.shape[2:])  # noqa: E731
        x0 = self.refiner(
            flat(coarse), flat(feats), flat(targets.to(coarse.dtype)), flat(pose_px), ct.reshape(b * t, -1)
        )
        return x0.view(b, t, c, hh, ww).float()
