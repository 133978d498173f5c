"""One process of the two-process LoRA test (`torchrun --nproc_per_node 2`).

Each rank trains the tiny FluxOMFA's LoRA on its own batch; DDP averages the
gradients, so the replicas must stay identical. Rank 0 writes the losses and
the largest difference between the ranks' trainable weights to argv[1].
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from test_backbone_flux import _batch, tiny_model

from omfa.backbones.lora import add_lora
from omfa.diffusion import alphas_cumprod
from omfa.training.loss import partial_diffusion_loss


def main(out: str) -> None:
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    model = tiny_model(seed=5)  # the same seeded base and LoRA init on every rank
    params = add_lora(model, rank=4)
    opt = torch.optim.AdamW(params, lr=2e-2, weight_decay=0.0)
    model, opt = accelerator.prepare(model, opt)
    batch, abar = _batch(seed=10 * accelerator.process_index), alphas_cumprod()  # each rank its own data
    losses = []
    for _ in range(12):
        loss = partial_diffusion_loss(model, batch, torch.Generator().manual_seed(0), abar)
        opt.zero_grad()
        accelerator.backward(loss)
        opt.step()
        losses.append(accelerator.reduce(loss.detach(), "mean").item())
    trained = torch.cat([p.detach().flatten() for p in accelerator.unwrap_model(model).parameters() if p.requires_grad])
    every = accelerator.gather(trained[None])  # (ranks, P)
    if accelerator.is_main_process:
        spread = (every - every[0]).abs().max().item()
        result = {"ranks": accelerator.num_processes, "losses": losses, "spread": spread}
        Path(out).write_text(json.dumps(result))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
