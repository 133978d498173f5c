"""LoRA on the frozen backbone through peft, saved apart from the base weights.

`add_lora` freezes the backbone and injects low-rank adapters into the
attention and feed-forward projections (the modules diffusers' FLUX LoRA
training example adapts); the adapter's own layers (pose embedder, prompt
embedding) stay trainable. `train_full` is the alternative: every weight
trains and `FluxOMFA.save_pretrained` writes the whole backbone.

On disk a LoRA is peft's layout: `adapter_config.json` and
`adapter_model.safetensors` with the LoRA matrices only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn

LORA_WEIGHTS = "adapter_model.safetensors"
# Attention (image and text streams) and both feed-forwards of the double blocks, and the
# single blocks' projections; "proj_out" is named by its parent so FLUX's output head stays frozen.
LORA_TARGETS: tuple[str, ...] = (
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
    "proj_mlp",
    r"single_transformer_blocks\.\d+\.proj_out",
)


def _target_modules(targets: Sequence[str]) -> str:
    # one regex over full module names (peft matches a string target_modules with re.fullmatch)
    return r".*(" + "|".join(t.replace(".", r"\.") if "\\" not in t else t for t in targets) + r")"


def add_lora(model: nn.Module, rank: int = 16, alpha: float | None = None, targets: Sequence[str] = LORA_TARGETS):
    """Freeze `model.backbone` and give it LoRA adapters of `rank`; returns the trainable parameters."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    model.backbone.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=_target_modules(targets))
    model.backbone.add_adapter(config)  # peft injection; LoRA B starts at zero: the output is unchanged
    for name, p in model.backbone.named_parameters():
        p.requires_grad_("lora_" in name)
    return [p for p in model.parameters() if p.requires_grad]


def train_full(model: nn.Module):
    """Full fine-tuning: every weight trains; returns the parameters."""
    model.requires_grad_(True)
    return list(model.parameters())


def has_lora(backbone: nn.Module) -> bool:
    return bool(getattr(backbone, "peft_config", None))


def save_lora(backbone: nn.Module, folder: str | os.PathLike) -> None:
    """peft layout: adapter_config.json and the LoRA matrices alone in adapter_model.safetensors."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    backbone.peft_config["default"].save_pretrained(folder)
    state = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(backbone).items()}
    save_file(state, folder / LORA_WEIGHTS)


def load_lora(backbone: nn.Module, folder: str | os.PathLike) -> None:
    """Inject the saved LoRA into a freshly loaded base and load its matrices."""
    folder = Path(folder)
    if not (folder / LORA_WEIGHTS).is_file():
        raise ValueError(f"{folder} has no {LORA_WEIGHTS}; pass the lora/ folder FluxOMFA.save_pretrained wrote")
    backbone.add_adapter(LoraConfig.from_pretrained(folder))
    result = set_peft_model_state_dict(backbone, load_file(folder / LORA_WEIGHTS))
    if result.unexpected_keys:
        raise ValueError(f"{folder} holds LoRA weights this backbone has no place for: {result.unexpected_keys[:3]}")
