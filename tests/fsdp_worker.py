"""One process of the two-process FSDP test (`torchrun --nproc_per_node 2 fsdp_worker.py BACKBONE RESULT PIPELINE`).

Real FSDP2 over gloo on CPUs. accelerate builds its FSDP plugin only for GPUs, so the worker shards the
model itself as accelerate's FSDP2 preparation does with the shipped configs (`fully_shard` on every unit
of the auto-wrap class `Linear`, bottom-up, then on the whole model), and drives the training loop's own
checkpoint functions (`omfa.training.loop`, `omfa.training.sharding`). BACKBONE "omfa" is the tiny
from-scratch model, "flux" a rank-4 LoRA of the tiny FluxOMFA.

It trains 3 steps, saves the gathered weights and optimiser state as a checkpoint, trains 2 more; a fresh,
differently initialised model resumes from the checkpoint and trains the same 2 steps; rank 0 repeats the 5
steps unsharded over both ranks' batches. It writes to RESULT the losses, the resumed step and the largest
differences between the runs, and ("omfa") exports the checkpointed weights as a pipeline to PIPELINE.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from test_backbone_flux import tiny_model
from torch import nn
from torch.distributed.fsdp import fully_shard

from omfa.backbones.lora import add_lora
from omfa.canvas import TASKS
from omfa.denoiser import OMFATransformer
from omfa.diffusion import alphas_cumprod
from omfa.training import sharding
from omfa.training.batch import Batch
from omfa.training.loop import TrainConfig, load_checkpoint, load_optimizer, rng_state, save_checkpoint
from omfa.training.loss import partial_diffusion_loss
from omfa.training.models import export_pipeline

HW = {"omfa": (16, 16), "flux": (16, 12)}  # the tiny preset's 8 px patches; the tiny FLUX's 2x2 packing


def batch(rank: int, step: int, hw: tuple[int, int]) -> Batch:
    """Each rank its own data, the same on resume, of one task per step on every rank, as the loop draws them
    under FSDP (`omfa.training.loop.train`): a try-on, or every third step a try-off, whose missing pose map
    leaves the pose embedder without a gradient, on every rank alike."""
    g = torch.Generator().manual_seed(100 * rank + step)
    task = TASKS["try_off_upper" if step % 3 == 2 else "try_on_upper"]
    targets, conds = task.slot_indices()
    return Batch(
        targets=torch.randn(2, len(targets), 3, *hw, generator=g).clamp(-1, 1),
        target_slots=targets,
        conditions=torch.randn(2, len(conds), 3, *hw, generator=g).clamp(-1, 1),
        condition_slots=conds,
        pose=torch.randn(2, 3, *hw, generator=g) if task.uses_pose else None,
    )


def noise(step: int) -> torch.Generator:
    """The noise and timestep draws of a step: the same on every rank, in the reference and on resume."""
    return torch.Generator().manual_seed(step)


def tiny(backbone: str, seed: int) -> nn.Module:
    """The tiny from-scratch model of `seed`, or the tiny FluxOMFA (one fixed base) with a rank-4 LoRA of `seed`."""
    if backbone == "omfa":
        torch.manual_seed(seed)
        return OMFATransformer.from_preset("tiny", sample_size=HW["omfa"])
    model = tiny_model(seed=5)
    torch.manual_seed(seed)
    add_lora(model, rank=4)
    return model


def shard(model: nn.Module) -> nn.Module:
    """accelerate's FSDP2 preparation with the shipped configs' auto-wrap class `Linear`: each nn.Linear
    one unit (bottom-up), then the whole model, which holds the rest."""
    for module in list(model.modules())[::-1]:
        if isinstance(module, nn.Linear):
            fully_shard(module)
    return fully_shard(model)


def reference(model: nn.Module, steps: int, ranks: int, abar) -> torch.Tensor:
    """The same steps on one unsharded model over every rank's batch, its loss their mean: what
    averaging the ranks' gradients (FSDP's reduce-scatter, as DDP's all-reduce) computes."""
    opt = adamw(model)
    sched = lambda_lr(opt)
    hw = tuple(model.config.sample_size)
    for step in range(steps):
        loss = sum(partial_diffusion_loss(model, batch(r, step, hw), noise(step), abar) for r in range(ranks)) / ranks
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return torch.cat([v.flatten().float() for v in model.state_dict().values()])


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    trained = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trained, lr=1e-3, betas=(0.9, 0.99), fused=True)  # as the loop's


def lambda_lr(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 2))


def train(model, opt, sched, first: int, steps: int, rank: int, abar) -> list[float]:
    losses = []
    for step in range(first, first + steps):
        loss = partial_diffusion_loss(model, batch(rank, step, tuple(model.config.sample_size)), noise(step), abar)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def gathered(model) -> torch.Tensor:
    state = sharding.gather_model_state(model)
    return torch.cat([v.flatten().float() for v in state.values()]) if state else torch.zeros(0)


def main(backbone: str, result_path: str, pipeline_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    cfg = TrainConfig(preset="tiny", mixed_precision="no", backbone=backbone)
    abar, ckpt, hw = alphas_cumprod(), Path(pipeline_dir).parent / "checkpoint", HW[backbone]

    model = tiny(backbone, seed=0)
    whole = sharding.whole_copy(model, rank == 0)  # the loop's, for saving and export
    unsharded = copy.deepcopy(model)
    shard(model)
    start = gathered(model)
    opt = adamw(model)
    sched = lambda_lr(opt)
    losses = train(model, opt, sched, 0, 3, rank, abar)
    saved = sharding.gather(model, opt, whole)  # what the loop's save does under FSDP
    rng, gen = np.random.default_rng(rank), torch.Generator().manual_seed(rank)
    if rank == 0:
        whole, optimizer_state = saved
        save_checkpoint(ckpt, 3, whole, None, optimizer_state, sched, [rng_state(rng, gen)], cfg, hw, None, True)
        if backbone == "omfa":  # (FluxOMFA exports LoRA over a base folder, which the tiny one has not)
            export_pipeline(whole, Path(pipeline_dir))
    dist.barrier()
    losses += train(model, opt, sched, 3, 2, rank, abar)
    end = gathered(model)

    # the loop's order: weights and generators into the unsharded model, then the optimiser into the sharded one
    fresh = tiny(backbone, seed=1)
    resumed_at = load_checkpoint(ckpt, fresh, None, np.random.default_rng(9), torch.Generator())
    shard(fresh)
    fresh_opt = adamw(fresh)
    fresh_sched = lambda_lr(fresh_opt)
    load_optimizer(ckpt, fresh, fresh_opt, fresh_sched, sharded=True)
    resumed_losses = train(fresh, fresh_opt, fresh_sched, resumed_at, 2, rank, abar)
    resumed_end = gathered(fresh)
    if rank == 0:
        expected = reference(unsharded, 5, dist.get_world_size(), abar)
        result = {
            "reference_spread": float((end - expected).abs().max()),
            "ranks": dist.get_world_size(),
            "losses": losses,
            "resumed_losses": resumed_losses,
            "resumed_at": resumed_at,
            "trained": float((end - start).abs().max()),
            "resume_spread": float((end - resumed_end).abs().max()),
            "lr_epoch": fresh_sched.last_epoch,
            "checkpoint_keys": sorted(load_file(ckpt / "model.safetensors")),
        }
        Path(result_path).write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
