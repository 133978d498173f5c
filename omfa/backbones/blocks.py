"""One FLUX block applied to OMFA's token groups, each group with its own timestep embedding.

diffusers' FLUX blocks modulate every token of a sample with one `temb`.
OMFA needs two per sample: the prompt and the targets at the targets'
timestep, the conditions at t = 0. Running each group through the block's own
adaLN-Zero layers with its own `temb`, and joining the groups only inside
attention, is per-token modulation with the pretrained weights untouched
(OminiControl does the same for FLUX). Everything in a block except attention
acts token by token, so splitting the sequence this way changes nothing else.

Attention is shaped for the exact condition cache:
- a condition slot attends only within itself, so its keys/values depend on
  its image, its slot and the model, never on the timestep or the targets;
- prompt and target tokens attend to the prompt, the targets and every kept
  condition token.

The functions call the blocks' own submodules (norms, projections,
feed-forwards) in the order their `forward` does, rather than an attention
processor: a processor sees tokens already modulated with one `temb`. So they
follow diffusers' FLUX block layout (pinned in requirements.txt); the tests
check them against `FluxTransformer2DModel.forward` on one slot.

Shapes: B batch, L tokens, D = N * d hidden, N heads, d head size. A rotary
table `rope` is (cos, sin), each (L, d), as `FluxPosEmbed` returns it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock, FluxTransformerBlock
from torch import nn

Rope = tuple[torch.Tensor, torch.Tensor]
FluxBlock = FluxTransformerBlock | FluxSingleTransformerBlock
# What a group's second half needs from its first: the gates, shifts and scales, and the
# single block's parallel MLP branch.
Pending = tuple[torch.Tensor, ...]


def _heads(x: torch.Tensor, head_dim: int, norm: nn.Module | None = None) -> torch.Tensor:
    """(B, L, D) -> (B, N, L, d), through the per-head RMSNorm when given."""
    x = x.unflatten(-1, (-1, head_dim))
    return (norm(x) if norm is not None else x).transpose(1, 2)


def project(
    block: FluxBlock, h: torch.Tensor, temb: torch.Tensor, rope: Rope, context: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Pending]:
    """First half of `block` for one group: h (B, L, D), temb (B, D) -> q, k, v (B, N, L, d) and pending state.

    `context` selects the double block's text stream (FLUX's prompt weights);
    single blocks have one stream and ignore it.
    """
    attn = block.attn
    if isinstance(block, FluxTransformerBlock):
        norm = block.norm1_context if context else block.norm1
        x, gate_msa, shift_mlp, scale_mlp, gate_mlp = norm(h, emb=temb)
        pending = (gate_msa, shift_mlp, scale_mlp, gate_mlp)
        if context:
            q, k, v = attn.add_q_proj(x), attn.add_k_proj(x), attn.add_v_proj(x)
            norm_q, norm_k = attn.norm_added_q, attn.norm_added_k
        else:
            q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
            norm_q, norm_k = attn.norm_q, attn.norm_k
    else:
        x, gate = block.norm(h, emb=temb)
        pending = (gate, block.act_mlp(block.proj_mlp(x)))
        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        norm_q, norm_k = attn.norm_q, attn.norm_k
    q = apply_rotary_emb(_heads(q, attn.head_dim, norm_q), rope)
    k = apply_rotary_emb(_heads(k, attn.head_dim, norm_k), rope)
    return q, k, _heads(v, attn.head_dim), pending


def finish(block: FluxBlock, h: torch.Tensor, attended: torch.Tensor, pending: Pending, context: bool) -> torch.Tensor:
    """Second half of `block` for one group: residual h (B, L, D), attention output (B, N, L, d) -> next h."""
    a = attended.transpose(1, 2).flatten(2).to(h.dtype)  # (B, L, D)
    if isinstance(block, FluxTransformerBlock):
        gate_msa, shift_mlp, scale_mlp, gate_mlp = pending
        if context:
            a, norm2, ff = block.attn.to_add_out(a), block.norm2_context, block.ff_context
        else:
            a, norm2, ff = block.attn.to_out[1](block.attn.to_out[0](a)), block.norm2, block.ff
        h = h + gate_msa[:, None] * a
        return h + gate_mlp[:, None] * ff(norm2(h) * (1 + scale_mlp[:, None]) + shift_mlp[:, None])
    gate, mlp = pending
    return h + gate[:, None] * block.proj_out(torch.cat([a, mlp], dim=2))


def condition_step(
    block: FluxBlock, hc: torch.Tensor, temb0: torch.Tensor, rope: Rope, num_slots: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Condition tokens hc (B, K*L, D) at temb0 (B, D) -> their k, v (B, N, K*L, d) and the next hc.

    Each of the K slots attends only within itself: slots fold into the batch for attention.
    """
    q, k, v, pending = project(block, hc, temb0, rope, context=False)
    b, n, kl, d = q.shape
    l = kl // num_slots
    local = lambda x: x.view(b, n, num_slots, l, d).transpose(1, 2).reshape(b * num_slots, n, l, d)  # noqa: E731
    a = F.scaled_dot_product_attention(local(q), local(k), local(v))  # (B*K, N, L, d)
    a = a.view(b, num_slots, n, l, d).transpose(1, 2).reshape(b, n, kl, d)
    return k, v, finish(block, hc, a, pending, context=False)


def target_step(
    block: FluxBlock,
    hp: torch.Tensor,
    ht: torch.Tensor,
    temb: torch.Tensor,
    rope_prompt: Rope,
    rope_targets: Rope,
    kc: torch.Tensor | None,
    vc: torch.Tensor | None,
    mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt hp (B, P, D) and targets ht (B, Lt, D) at temb (B, D) -> their next hidden states.

    kc, vc (B, N, Lc, d): the conditions' keys/values of this block (live or
    cached) or None; mask (B, P + Lt + Lc) bool, False for dropped condition tokens.
    The prompt comes first, as FLUX orders text before image tokens.
    """
    qp, kp, vp, pending_p = project(block, hp, temb, rope_prompt, context=True)
    qt, kt, vt, pending_t = project(block, ht, temb, rope_targets, context=False)
    ctx_k, ctx_v = ([kc], [vc]) if kc is not None else ([], [])
    q = torch.cat([qp, qt], dim=2)
    k = torch.cat([kp, kt, *ctx_k], dim=2)
    v = torch.cat([vp, vt, *ctx_v], dim=2)
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None, None, :])
    p = hp.shape[1]
    return finish(block, hp, a[:, :, :p], pending_p, context=True), finish(block, ht, a[:, :, p:], pending_t, False)
