"""Train one model for all tasks (`omfa train`), on one CPU or many GPUs.

    omfa train --data data/synth --out runs/small --config small-cpu
    accelerate launch -m omfa train --data ... --config base-gpu     # DDP / FSDP

Each step draws one task (try-on, try-off, outfit, multi-view) and a batch of
samples that support it, noises the target slots only, and regresses their
x0 (`omfa.diffusion.partial_diffusion_loss`). Checkpoints resume exactly:
model, EMA, optimiser, LR schedule, step and every random generator; the data
order is a function of the saved generator, so it resumes too.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from omfa.canvas import CANVAS_HW, TASKS, example_from_sample, get_task, sample_tasks
from omfa.denoiser import OMFATransformer
from omfa.diffusion import Batch, alphas_cumprod, make_scheduler, partial_diffusion_loss, roles_to_slots


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "small"
    steps: int = 20000
    batch_size: int = 16
    lr: float = 4e-4
    warmup: int = 500
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    condition_dropout: float = 0.1
    full_canvas: bool = False  # ablation: noise every slot at one timestep
    local_condition_attention: bool = True  # ablation: False = full attention among conditions
    refiner: bool = True  # False: the preset without its pixel refiner (the plain patch head)
    tasks: tuple[str, ...] = tuple(TASKS)
    # relative frequency of each task family; missing tasks default to 1.0
    task_weights: dict = field(default_factory=lambda: {
        "try_on_upper": 1.5, "try_on_lower": 1.5, "outfit": 1.0,
        "try_off_upper": 1.0, "try_off_lower": 1.0, "try_off_outfit": 0.5, "multiview": 1.0})
    mixed_precision: str = "bf16"  # bf16 autocast is 2-4x faster on AVX512-bf16 CPUs and on GPUs
    seed: int = 0
    log_every: int = 50
    save_every: int = 100


CONFIGS: dict[str, TrainConfig] = {
    "tiny-test": TrainConfig(preset="tiny", steps=20, batch_size=4, warmup=2, log_every=5, save_every=10,
                             mixed_precision="no"),
    "small-cpu": TrainConfig(),
    "base-gpu": TrainConfig(preset="base", steps=200000, batch_size=64, lr=2e-4, warmup=2000, ema_decay=0.9999,
                            save_every=5000),
}


class TaskSampler:
    """Samples (task, batch) pairs; holds the dataset's per-task index lists."""

    def __init__(self, dataset, tasks: tuple[str, ...], weights: dict):
        self.dataset, self.task_filter, self.weights = dataset, tasks, weights
        self.indexed = 0
        self.supports_lists: dict[str, list[int]] = {t: [] for t in tasks}
        self.refresh()

    def refresh(self) -> None:
        """Index samples added since the last call (a dataset still being generated grows)."""
        if hasattr(self.dataset, "refresh"):
            self.dataset.refresh()
        for i in range(self.indexed, len(self.dataset)):
            for t in sample_tasks(self._meta_view(i)):
                if t in self.supports_lists:
                    self.supports_lists[t].append(i)
        self.indexed = len(self.dataset)
        self.supports = {t: np.array(ix) for t, ix in self.supports_lists.items() if ix}
        if not self.supports:
            raise ValueError(f"no sample in the dataset supports any of the tasks {self.task_filter}")
        names = list(self.supports)
        w = np.array([self.weights.get(t, 1.0) for t in names], dtype=np.float64)
        self.tasks, self.probs = names, w / w.sum()

    def _meta_view(self, i: int) -> dict:
        if hasattr(self.dataset, "read_member"):  # shards: read the small JSON member only
            return {"meta": json.loads(self.dataset.read_member(i, "meta"))}
        return self.dataset[i]

    def draw(self, rng: np.random.Generator, batch_size: int) -> tuple[str, list[dict]]:
        task = self.tasks[int(rng.choice(len(self.tasks), p=self.probs))]
        idx = rng.choice(self.supports[task], size=batch_size, replace=len(self.supports[task]) < batch_size)
        return task, [self.dataset[int(i)] for i in idx]


def collate(task: str, samples: list[dict], rng: np.random.Generator) -> Batch:
    """Samples -> a Batch of one task configuration (targets, conditions, pose)."""
    spec = get_task(task)
    examples = [example_from_sample(s, task, rng) for s in samples]
    images = torch.stack([e["images"] for e in examples])  # (B, S, 3, H, W)
    targets, conditions = roles_to_slots(spec.roles())
    return Batch(
        targets=images[:, targets],
        target_slots=targets,
        conditions=images[:, conditions] if conditions else None,
        condition_slots=conditions,
        pose=torch.stack([e["pose"] for e in examples]) if spec.uses_pose else None,
    )


def build_model(cfg: TrainConfig) -> OMFATransformer:
    extra = {} if cfg.refiner else {"refiner_channels": 0}
    return OMFATransformer.from_preset(cfg.preset, sample_size=CANVAS_HW,
                                       local_condition_attention=cfg.local_condition_attention, **extra)


def load_init_weights(model: OMFATransformer, path: Path) -> None:
    """Load weights for a warm start; a pixel refiner the file lacks starts fresh.

    Its zero-initialised output leaves the loaded model's predictions unchanged, so a
    trained model can grow a refiner and keep training. Any other mismatch is an error.
    """
    try:
        missing, unexpected = model.load_state_dict(load_file(path), strict=False)
    except RuntimeError as err:  # shape mismatches: weights of another preset
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise ValueError(f"{path} does not fit preset weights: {first}") from None
    missing = [k for k in missing if not k.startswith("refiner.")]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit preset weights: missing {missing[:5]}, unexpected {unexpected[:5]}")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    # one fused call over all tensors: a Python loop of lerp_ costs a visible share of a CPU step
    torch._foreach_lerp_(list(ema.parameters()), [p.detach().float() for p in model.parameters()], 1 - decay)


def export_pipeline(ema: OMFATransformer, out: Path, dtype: torch.dtype = torch.float16) -> None:
    """Save the EMA weights as a loadable pipeline folder (safetensors, fp16 halves the file)."""
    from omfa.pipeline import OMFAPipeline

    model = torch.nn.Module.to(copy.deepcopy(ema), dtype)  # plain cast: no fp32-module bookkeeping needed
    OMFAPipeline(model, make_scheduler("ddim")).save_pretrained(out)


def _rng_state(rng: np.random.Generator, gen: torch.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": gen.get_state().tolist(), "torch_global": torch.get_rng_state().tolist()}


def save_checkpoint(path: Path, step: int, model, ema, opt, sched, rng, gen, cfg: TrainConfig) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, tmp / "ema.safetensors")
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "rng": _rng_state(rng, gen), "config": asdict(cfg)}))
    # swap in atomically so an interrupted save never leaves a half checkpoint
    old = path.with_name(path.name + ".old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


def load_checkpoint(path: Path, model, ema, opt, sched, rng, gen) -> int:
    model.load_state_dict(load_file(path / "model.safetensors"))
    ema.load_state_dict(load_file(path / "ema.safetensors"))
    if (path / "optimizer.pt").exists():  # weights-only restarts (a fresh optimiser) are allowed
        state = torch.load(path / "optimizer.pt", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    meta = json.loads((path / "state.json").read_text())
    rng.bit_generator.state = meta["rng"]["numpy"]
    gen.set_state(torch.tensor(meta["rng"]["torch"], dtype=torch.uint8))
    torch.set_rng_state(torch.tensor(meta["rng"]["torch_global"], dtype=torch.uint8))
    return int(meta["step"])


def train(cfg: TrainConfig, dataset, out: Path, *, max_minutes: float | None = None,
          stop_after: int | None = None, init_weights: Path | None = None, log=print) -> dict:
    """Train (resuming from `out/checkpoint` if present); returns the step reached and the loss log.

    `max_minutes` / `stop_after` (steps in this call) end the run early after
    saving, as an interruption would; the next call resumes from there.
    """
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    rng = np.random.default_rng([cfg.seed, accelerator.process_index])
    gen = torch.Generator(accelerator.device).manual_seed(cfg.seed * 1000 + accelerator.process_index)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    if init_weights is not None:  # warm start from a weights file, with a fresh optimiser
        load_init_weights(model, init_weights)
    ema = copy.deepcopy(model).requires_grad_(False)
    # fused AdamW: the per-tensor default on CPU spent ~14% of a training step in Python
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99),
                            fused=True)
    warm = lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(warm(s), 0.05))
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    step = load_checkpoint(ckpt, model, ema, opt, sched, rng, gen) if (ckpt / "state.json").exists() else 0
    model, opt = accelerator.prepare(model, opt)
    ema.to(accelerator.device)
    sampler = TaskSampler(dataset, cfg.tasks, cfg.task_weights)
    abar = alphas_cumprod().to(accelerator.device)
    log(f"training {cfg.preset} from step {step} to {cfg.steps} on {accelerator.device} "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, tasks {sampler.tasks})")
    running: dict[str, list[float]] = {t: [] for t in sampler.tasks}
    start, history, first_step = time.time(), [], step
    while step < cfg.steps:
        if step % 250 == 0 and step > first_step:
            sampler.refresh()
        # 1. a task and a batch of samples that support it
        task, samples = sampler.draw(rng, cfg.batch_size)
        batch = collate(task, samples, rng).to(accelerator.device)
        # 2. partial diffusion: noise the targets, keep the conditions clean
        with accelerator.autocast():
            loss = partial_diffusion_loss(model, batch, gen, abar, cfg.condition_dropout, cfg.full_canvas)
        # 3. the update, then the EMA
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        # EMA warm-up (decay (1+s)/(10+s) until it reaches ema_decay): a short run's EMA is not
        # stuck near the random initialisation
        ema_update(ema, accelerator.unwrap_model(model), min(cfg.ema_decay, (1 + step) / (10 + step)))
        step += 1
        running.setdefault(task, []).append(loss.item())
        if step % cfg.log_every == 0 and accelerator.is_main_process:
            means = {t: round(float(np.mean(v)), 5) for t, v in running.items() if v}
            history.append({"step": step, "loss": means, "minutes": round((time.time() - start) / 60, 2)})
            log(json.dumps({"step": step, "lr": sched.get_last_lr()[0], "loss": means}))
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(history[-1]) + "\n")
            running = {t: [] for t in sampler.tasks}
        timed_out = (max_minutes is not None and (time.time() - start) / 60 > max_minutes) or (
            stop_after is not None and step - first_step >= stop_after)
        if accelerator.is_main_process and (step % cfg.save_every == 0 or step == cfg.steps or timed_out):
            save_checkpoint(ckpt, step, accelerator.unwrap_model(model), ema, opt, sched, rng, gen, cfg)
            export_pipeline(ema, out / "pipeline")
        if timed_out:
            break
    accelerator.wait_for_everyone()
    return {"step": step, "history": history}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="omfa train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset folder written by `omfa synth`")
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumes if it has a checkpoint)")
    parser.add_argument("--config", default="small-cpu", choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--tasks", help="comma-separated task subset (ablations)")
    parser.add_argument("--full-canvas", action="store_true", help="ablation: noise every slot")
    parser.add_argument("--full-condition-attention", action="store_true", help="ablation: conditions attend across slots")
    parser.add_argument("--no-refiner", action="store_true", help="train the preset with the plain patch head")
    parser.add_argument("--max-minutes", type=float, help="stop (after saving) when this much time has passed")
    parser.add_argument("--init-weights", type=Path, help="start from these model weights (safetensors)")
    parser.add_argument("--in-memory", action="store_true", help="decode the whole split into memory first")
    args = parser.parse_args(argv)
    cfg = CONFIGS[args.config]
    overrides = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size}.items() if v is not None}
    if args.tasks:
        tasks = tuple(t.strip() for t in args.tasks.split(","))
        for t in tasks:
            get_task(t)
        overrides["tasks"] = tasks
    if args.full_canvas:
        overrides["full_canvas"] = True
    if args.full_condition_attention:
        overrides["local_condition_attention"] = False
    if args.no_refiner:
        overrides["refiner"] = False
    cfg = replace(cfg, **overrides)
    from omfa.data.shards import ShardDataset

    dataset = ShardDataset(args.data, "train")
    if args.in_memory:  # ~0.3 MB per sample: decode once instead of every epoch
        dataset = [dataset[i] for i in range(len(dataset))]
    args.out.mkdir(parents=True, exist_ok=True)
    train(cfg, dataset, args.out, max_minutes=args.max_minutes, init_weights=args.init_weights)
    return 0
