"""Whole weights and optimiser state of a model that FSDP shards over the processes (`omfa train` under FSDP).

FSDP2 (`check_fsdp_version`) leaves each process a shard of every weight, so whatever reads whole weights
(the checkpoint, the exported pipeline) gathers them here first, with torch.distributed.checkpoint's
state-dict functions: accelerate's `get_state_dict` calls the model one for FSDP2, and they name tensors
as the unwrapped model does.

Checkpoints hold full state dicts, not sharded (torch.distributed.checkpoint) folders: an FSDP run then
writes the layout a DDP run writes (model.safetensors, optimizer.pt), resumes on any number of processes
or under DDP, and exports from the same gathered weights. The price is host memory on the main process
while it saves: the whole model and optimiser state (a full fine-tune of FLUX.1: 48 GB of fp32 weights
and 96 GB of Adam moments); the GPUs hold shards throughout.
"""

from __future__ import annotations

import copy
import os

import torch
from accelerate import Accelerator, DistributedType
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

# whole tensors, copied to the CPU of process 0 only: the other processes get {} (no second full copy)
GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
# every process passes the whole state (each reads the checkpoint file) and keeps its shard of it
SCATTER = StateDictOptions(full_state_dict=True)
FULL_LAYOUT = "fqn"  # optimizer.pt of an FSDP run: state keyed by parameter name, not by position


def fsdp_requested() -> bool:
    """Whether `accelerate launch` was given an FSDP config (it tells the processes through the environment)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def check_fsdp_device() -> None:
    """Refuse an FSDP launch without CUDA with one line, before accelerate fails with a traceback.

    accelerate builds its FSDP plugin only for an accelerator device ("There are currently no available
    devices found, must be one of 'XPU', 'CUDA', ..."); on CPUs torch's FSDP1 crashes over gloo, and
    only FSDP2 would run, which accelerate does not offer there.
    """
    if fsdp_requested() and not torch.cuda.is_available():
        raise ValueError(
            "FSDP needs CUDA GPUs (accelerate shards only on an accelerator); on CPUs launch with "
            "configs/accelerate/cpu_2proc.yaml (DDP over gloo)"
        )


def is_sharded(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.FSDP


def check_fsdp_version(accelerator: Accelerator) -> None:
    """Refuse FSDP1 (`fsdp_version: 1`): the models run their blocks through other methods than `forward`.

    The from-scratch blocks are called through `Block.conditions` and `Block.targets`, FLUX's through
    `omfa.backbones.blocks`' functions, while FSDP gathers a unit's weights in its `forward` hooks. FSDP2
    shards each parameter on its own, so the `Linear` layers those calls run (through `forward`) can be the
    units (the shipped configs); FSDP1 flattens and would need the blocks.
    """
    if is_sharded(accelerator) and not accelerator.is_fsdp2:
        raise ValueError(
            "this training loop shards with FSDP2: set fsdp_version: 2 and fsdp_transformer_layer_cls_to_wrap: "
            "Linear in the accelerate config (as configs/accelerate/fsdp_bf16.yaml does)"
        )


def whole_copy(model: nn.Module, is_main: bool) -> nn.Module | None:
    """The main process's copy of the not yet sharded `model`, that `gather` loads the whole weights into for
    saving and export (None elsewhere). It stays on the CPU and keeps the weights' `requires_grad`, which
    tells `omfa.training.models.checkpoint_state` what a FLUX checkpoint holds."""
    return copy.deepcopy(model) if is_main else None


def gather(model: nn.Module, opt: torch.optim.Optimizer, whole: nn.Module | None) -> tuple[nn.Module, dict] | None:
    """The whole weights of the sharded `model`, loaded into `whole`, and `opt`'s whole state: (whole, state) on
    the main process, None elsewhere. Every process must call it."""
    weights, optimizer_state = gather_model_state(model), gather_optimizer_state(model, opt)
    if whole is None:
        return None
    whole.load_state_dict(weights)
    return whole, optimizer_state


def gather_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict of a sharded `model` on process 0's CPU ({} elsewhere). Every process must call it."""
    return get_model_state_dict(model, options=GATHER)


def gather_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """`opt`'s whole state, keyed by parameter name, on process 0's CPU ({} elsewhere). Every process calls it."""
    return get_optimizer_state_dict(model, _plain(opt), options=GATHER)


def load_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """Load `gather_optimizer_state`'s result into `opt` over a sharded (or whole) `model`. Every process calls it
    with the whole state."""
    set_optimizer_state_dict(model, _plain(opt), state, options=SCATTER)


def _plain(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    # accelerate's AcceleratedOptimizer wraps the torch optimiser the state-dict functions inspect
    return getattr(opt, "optimizer", opt)
