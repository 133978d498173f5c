"""Train one model for all tasks (`omfa train`), on one CPU or many GPUs.

    omfa train --data data/synth --out runs/small --config small-cpu
    omfa train --data data/synth --out runs/surface --pose-condition surface --loss-weighting min_snr
    omfa train --data data/synth --out runs/latent --vae models/vae --patch-size 2   # a latent canvas
    accelerate launch --config_file configs/accelerate/ddp_bf16.yaml -m omfa train --config viton-hd-1024 \
        --pretrained /models/FLUX.1-dev --vae /models/FLUX.1-dev/vae --data /data/VITON-HD --out runs/viton
    omfa train --config viton-hd-512 --pretrained ... --vae ... --data ... --dry-run   # build, two steps, report

Each step draws one task (try-on, try-off, outfit, multi-view) and a batch of
samples that support it, noises the target slots only, and regresses their
x0 (`omfa.training.loss.partial_diffusion_loss`). The model's canvas is the
dataset's image size, its pose input the configured pose condition
("parts" or "surface", `omfa.pose.condition`); both are saved in its config.
The backbone is the from-scratch slot transformer or FluxOMFA on a local
FLUX.1 (`omfa.training.models`); the data an `omfa synth` folder or a real
dataset (`omfa.data.real`) at the config's size. Under `accelerate launch`
each process draws its own batches and DDP averages the gradients; at the
end the ranks' trained weights are compared (`replica_spread`, logged).
Under an FSDP2 config (GPUs only) the weights, gradients and optimiser state
are sharded, the ranks draw one task per step, there is no EMA, and each save
gathers the whole state onto the main process (`omfa.training.sharding`).
Checkpoints resume exactly: the trained weights, EMA, optimiser, LR
schedule, step and every random generator; the data order is a function of
the saved generator, so it resumes too.

With a VAE (`vae`: a local diffusers autoencoder folder, `omfa.latents`) the
canvas is in latent units: the training set is encoded once into a latent
cache under the run folder (`omfa.training.latents.LatentDataset`, resumable),
the model's canvas is the latent size and its image and pose inputs have the
latent channels, and the exported pipeline holds the VAE and a cheap preview
decoder: the tiny autoencoder `preview_vae` if given, else a linear
latent-to-RGB map fitted on the cached latents (none when the VAE is itself a
tiny autoencoder, which is cheap already). FLUX.1 works on its VAE's latents.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs, DistributedType
from accelerate.utils import gather_object
from safetensors.torch import load_file, save_file

from omfa.canvas import TASKS, get_task
from omfa.data.examples import sample_tasks
from omfa.denoiser import OMFATransformer
from omfa.diffusion import alphas_cumprod
from omfa.latents import is_cheap_decoder, latent_channels, load_vae, vae_digest
from omfa.pose.condition import DEFAULT_POSE_CONDITION, check_kind
from omfa.training import sharding
from omfa.training.batch import collate
from omfa.training.latents import LatentDataset, fit_preview_map
from omfa.training.loss import check_sampling, check_weighting, partial_diffusion_loss
from omfa.training.models import (
    build_model,
    check_backbone,
    checkpoint_state,
    export_pipeline,
    load_checkpoint_state,
    parameter_counts,
    trainable_parameters,
    uses_ema,
)

DATASETS: tuple[str, ...] = ("synth", "viton-hd", "dresscode", "deepfashion")  # `synth`: an `omfa synth` folder


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
    pose_condition: str = DEFAULT_POSE_CONDITION  # the map joined to the person slot: "parts" or "surface"
    loss_weighting: str = "uniform"  # per-timestep weight of the x0 loss: "uniform" or "min_snr"
    timestep_sampling: str = "uniform"  # which timesteps batches draw: "uniform" or "high_noise"
    tasks: tuple[str, ...] = tuple(TASKS)
    # relative frequency of each task family; missing tasks default to 1.0
    task_weights: dict = field(
        default_factory=lambda: {
            "try_on_upper": 1.5,
            "try_on_lower": 1.5,
            "outfit": 1.0,
            "try_off_upper": 1.0,
            "try_off_lower": 1.0,
            "try_off_outfit": 0.5,
            "multiview": 1.0,
        }
    )
    mixed_precision: str = "bf16"  # bf16 autocast is 2-4x faster on AVX512-bf16 CPUs and on GPUs
    vae: str | None = None  # a local VAE folder (omfa.latents.load_vae): the canvas is its latents; None: pixels
    preview_vae: str | None = None  # a local tiny autoencoder of the same latent space, exported for previews
    patch_size: int | None = None  # None: the preset's (latent canvases are small: 2 suits an 8x VAE)
    seed: int = 0
    log_every: int = 50
    save_every: int = 100
    backbone: str = "omfa"  # "omfa": the from-scratch preset; "flux": FluxOMFA on `pretrained` (omfa.training.models)
    pretrained: str | None = None  # a local FLUX.1 folder (pipeline or transformer/), for backbone "flux"
    lora_rank: int = 16  # backbone "flux": LoRA rank, 0 = full fine-tune
    gradient_checkpointing: bool = False  # backbone "flux": recompute each block in backward
    dataset: str = "synth"  # what --data holds: an `omfa synth` folder or a real dataset (omfa.data.real)
    size_hw: tuple[int, int] | None = None  # real datasets: the canvas images are fitted to (height, width)
    estimate_pose: bool = False  # real datasets: pose maps from the pose estimator (else blank maps)

    def __post_init__(self) -> None:
        check_kind(self.pose_condition)
        if self.preview_vae is not None and self.vae is None:
            raise ValueError("preview_vae decodes latents; it needs a vae (pass --vae DIR as well)")
        check_weighting(self.loss_weighting)
        check_sampling(self.timestep_sampling)
        check_backbone(self.backbone)
        for task in (*self.tasks, *self.task_weights):
            get_task(task)
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank is {self.lora_rank}; use a rank >= 1, or 0 for a full fine-tune")


def _real_data_config(dataset: str, size_hw: tuple[int, int]) -> TrainConfig:
    """LoRA on FLUX.1 for a real dataset at `size_hw`: bf16, gradient checkpointing, per-GPU batch 4 / 2;
    multi-view data (DeepFashion-MultiModal) with the pose estimator's maps of the target photos."""
    small = size_hw[0] <= 512
    return TrainConfig(
        backbone="flux",
        dataset=dataset,
        size_hw=size_hw,
        estimate_pose=dataset == "deepfashion",
        lora_rank=16,
        gradient_checkpointing=True,
        steps=20000,
        batch_size=4 if small else 2,
        lr=1e-4,  # diffusers' FLUX LoRA examples
        warmup=200,
        save_every=1000,
        log_every=10,
        mixed_precision="bf16",
    )


CONFIGS: dict[str, TrainConfig] = {
    "tiny-test": TrainConfig(
        preset="tiny", steps=20, batch_size=4, warmup=2, log_every=5, save_every=10, mixed_precision="no"
    ),
    "small-cpu": TrainConfig(),
    "base-gpu": TrainConfig(
        preset="base", steps=200000, batch_size=64, lr=2e-4, warmup=2000, ema_decay=0.9999, save_every=5000
    ),
    # the real datasets at the field's two sizes, e.g. "viton-hd-512" (512x384) and "viton-hd-1024" (1024x768)
    **{
        f"{dataset}-{size_hw[0]}": _real_data_config(dataset, size_hw)
        for dataset in DATASETS[1:]
        for size_hw in ((512, 384), (1024, 768))
    },
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
        if hasattr(self.dataset, "sample_info"):  # latents: the chunk's metadata, no tensor loaded
            return self.dataset.sample_info(i)
        if hasattr(self.dataset, "read_member"):  # shards: read the small JSON member only
            return {"meta": json.loads(self.dataset.read_member(i, "meta"))}
        return self.dataset[i]

    def draw(
        self, rng: np.random.Generator, batch_size: int, task_rng: np.random.Generator | None = None
    ) -> tuple[str, list[dict]]:
        """A task (drawn from `task_rng` when given, else from `rng`) and `batch_size` samples from `rng`."""
        task = self.tasks[int((task_rng or rng).choice(len(self.tasks), p=self.probs))]
        idx = rng.choice(self.supports[task], size=batch_size, replace=len(self.supports[task]) < batch_size)
        return task, [self.dataset[int(i)] for i in idx]


def dataset_size_hw(dataset) -> tuple[int, int]:
    """(height, width) of a dataset's images: its `size_hw` (shards, real loaders), else its first sample's."""
    if getattr(dataset, "size_hw", None) is not None:
        return int(dataset.size_hw[0]), int(dataset.size_hw[1])
    if len(dataset) == 0:
        raise ValueError("the dataset has no samples yet; wait for the first shard, or point --data at another split")
    height, width = dataset[0]["reference"].shape[:2]
    return int(height), int(width)


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


def rng_state(rng: np.random.Generator, gen: torch.Generator, task_rng: np.random.Generator | None = None) -> dict:
    """One process's generators (and the global torch one), as a checkpoint stores them."""
    state = {
        "numpy": rng.bit_generator.state,
        "torch": gen.get_state().tolist(),
        "torch_global": torch.get_rng_state().tolist(),
    }
    return state if task_rng is None else state | {"numpy_tasks": task_rng.bit_generator.state}


def save_checkpoint(
    path: Path,
    step: int,
    model,
    ema,
    optimizer_state: dict,
    sched,
    rng_states: list[dict],
    cfg: TrainConfig,
    size_hw: tuple[int, int],
    vae_id: str | None = None,
    sharded: bool = False,
) -> None:
    """The trained weights of `model` (`checkpoint_state`), the EMA if kept, the optimiser's state (its own
    `state_dict`, or under FSDP `omfa.training.sharding.gather_optimizer_state`), schedule, step and every
    process's generators (`rng_states`, by rank: `rng_state`);
    `size_hw` is the canvas (latents with a VAE), `vae_id` the latent space (`omfa.latents.vae_digest`)."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(checkpoint_state(model), tmp / "model.safetensors")
    if ema is not None:
        save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, tmp / "ema.safetensors")
    layout = sharding.FULL_LAYOUT if sharded else "positional"
    torch.save({"optimizer": optimizer_state, "scheduler": sched.state_dict(), "layout": layout}, tmp / "optimizer.pt")
    state = {
        "step": step,
        "rng": rng_states[0],  # the main process's (checkpoints before rng_ranks hold only it)
        "rng_ranks": rng_states,
        "config": asdict(cfg),
        "size_hw": list(size_hw),
        "vae": vae_id,  # the latent space the model learned (omfa.latents.vae_digest); None: pixels
    }
    (tmp / "state.json").write_text(json.dumps(state))
    # swap in atomically so an interrupted save never leaves a half checkpoint
    old = path.with_name(path.name + ".old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


def check_resumable(path: Path, cfg: TrainConfig, size_hw: tuple[int, int], vae_id: str | None = None) -> None:
    """Refuse to resume a checkpoint that learned another canvas size, pose condition or latent space.

    None of them need change a weight's shape, so loading would succeed and silently
    train a model on inputs it never saw. Checkpoints older than these fields were
    trained at 128x96 px on part colours; they record none and are not checked.
    """
    meta = json.loads((path / "state.json").read_text())
    if meta.get("vae") != vae_id:
        trained = "pixels" if meta.get("vae") is None else f"the latents of VAE {meta['vae']}"
        given = "pixels" if vae_id is None else f"the latents of VAE {vae_id}"
        raise ValueError(
            f"{path} was trained on {trained}, not {given}; resume with the --vae it was trained with, "
            "or train into a new --out folder"
        )
    saved_size = meta.get("size_hw")
    unit = "px images" if vae_id is None else "latents"  # size_hw is the canvas: latents with a VAE
    if saved_size is not None and tuple(saved_size) != tuple(size_hw):
        raise ValueError(
            f"{path} was trained on {saved_size[0]}x{saved_size[1]} {unit} but the dataset's are "
            f"{size_hw[0]}x{size_hw[1]}; resume on data of that size, or train into a new --out folder "
            "(--init-weights warm-starts from its weights)"
        )
    saved_pose = meta.get("config", {}).get("pose_condition", DEFAULT_POSE_CONDITION)
    if saved_pose != cfg.pose_condition:
        raise ValueError(
            f"{path} was trained with pose condition {saved_pose!r}, not {cfg.pose_condition!r}; "
            f"resume with --pose-condition {saved_pose}, or train into a new --out folder"
        )
    saved_backbone = meta.get("config", {}).get("backbone", "omfa")
    if saved_backbone != cfg.backbone:
        raise ValueError(
            f"{path} trained backbone {saved_backbone!r}, not {cfg.backbone!r}; "
            f"resume with --backbone {saved_backbone}, or train into a new --out folder"
        )


def load_checkpoint(
    path: Path, model, ema, rng, gen, task_rng: np.random.Generator | None = None, rank: int = 0
) -> int:
    """Load the weights, the EMA (when both the run and the checkpoint keep one) and the generators into the
    unwrapped model; returns the step. The optimiser follows once the model is prepared (`load_optimizer`).

    Process `rank` resumes its own generators, so the ranks keep drawing different batches; a rank the
    checkpoint did not have (more processes than it was saved from) takes the main process's.
    """
    load_checkpoint_state(model, path / "model.safetensors")
    if ema is not None:
        # an FSDP checkpoint keeps no EMA: resuming it under DDP starts the EMA at the loaded weights
        ema_file = path / "ema.safetensors"
        ema.load_state_dict(load_file(ema_file) if ema_file.exists() else model.state_dict())
    meta = json.loads((path / "state.json").read_text())
    ranks = meta.get("rng_ranks", [meta["rng"]])
    saved = ranks[rank] if rank < len(ranks) else meta["rng"]
    rng.bit_generator.state = saved["numpy"]
    gen.set_state(torch.tensor(saved["torch"], dtype=torch.uint8))
    torch.set_rng_state(torch.tensor(saved["torch_global"], dtype=torch.uint8))
    if task_rng is not None and "numpy_tasks" in saved:
        task_rng.bit_generator.state = saved["numpy_tasks"]
    return int(meta["step"])


def load_optimizer(path: Path, model, opt, sched, sharded: bool = False) -> None:
    """Load the optimiser and schedule of `path` into the prepared `model`'s `opt`, sharded or not.

    An FSDP run saves the optimiser keyed by parameter name (`omfa.training.sharding`), which loads over any
    wrapping; a DDP run saves torch's positional layout, which FSDP's flattened parameters do not follow.
    A checkpoint without optimizer.pt restarts with a fresh optimiser (weights-only restarts are allowed).
    """
    if not (path / "optimizer.pt").exists():
        return
    state = torch.load(path / "optimizer.pt", weights_only=True)
    if state.get("layout") == sharding.FULL_LAYOUT:
        sharding.load_optimizer_state(model, opt, state["optimizer"])
    elif sharded:
        raise ValueError(
            f"{path} holds the optimiser of a DDP run, which does not load into FSDP's sharded parameters; "
            "resume it under DDP, or delete its optimizer.pt to restart the optimiser from its weights"
        )
    else:
        opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])


class SetupError(ValueError):
    """What `train` raises when the configuration cannot be built: the model, the data, the launch.

    `omfa train` reports it as a usage error (one line, exit status 2), as it does bad flags.
    """


@contextlib.contextmanager
def setup_errors() -> Iterator[None]:
    """Turn the ValueErrors and OSErrors (a missing folder, a file that is no model) of building a run into
    `SetupError`s; errors once training runs stay what they are."""
    try:
        yield
    except (ValueError, OSError) as error:
        raise SetupError(" ".join(str(error).split())) from error


@torch.no_grad()
def replica_spread(accelerator: Accelerator, model: torch.nn.Module) -> float | None:
    """Largest difference between the ranks' fingerprints of the trained weights: 0.0 when identical.

    A fingerprint is three sums per trained tensor (of the values, their squares and the values
    weighted by position), so comparing a 12B model costs no gather of its weights. None on one
    process and under FSDP, where each rank holds a shard.
    """
    if accelerator.num_processes == 1 or accelerator.distributed_type == DistributedType.FSDP:
        return None
    sums = []
    for p in accelerator.unwrap_model(model).parameters():
        if p.requires_grad:
            x = p.detach().double().flatten()
            sums.append(torch.stack([x.sum(), x.square().sum(), (x * torch.arange(x.numel(), device=x.device)).sum()]))
    every = accelerator.gather(torch.cat(sums)[None])  # (ranks, 3 * tensors)
    return float((every - every[0]).abs().max())


def _describe(cfg: TrainConfig, model, accelerator: Accelerator, dataset, step: int, tasks) -> str:
    """What the run built: the startup line (and the whole report of a dry run)."""
    trainable, total = parameter_counts(model)
    canvas = "x".join(str(v) for v in model.config.sample_size)
    canvas += f" latents of {cfg.vae}" if cfg.vae is not None else " px"
    source = f", base {cfg.pretrained}" if cfg.backbone == "flux" else ""
    images = f" at {cfg.size_hw[0]}x{cfg.size_hw[1]} px" if cfg.size_hw is not None else ""
    how = f"LoRA rank {cfg.lora_rank}" if cfg.backbone == "flux" and cfg.lora_rank else "all weights"
    return (
        f"training {type(model).__name__} ({cfg.backbone} backbone{source}) from step {step} to {cfg.steps}: "
        f"{trainable / 1e6:.2f}M of {total / 1e6:.2f}M parameters train ({how}"
        f"{', gradient checkpointing' if cfg.gradient_checkpointing else ''}); "
        f"data {cfg.dataset}{images}, {len(dataset)} samples, canvas {canvas} per slot "
        f"({model.config.in_channels} channels); "
        f"device {accelerator.device}, mixed precision {accelerator.mixed_precision}, "
        f"world size {accelerator.num_processes} ({accelerator.distributed_type.value}); "
        f"batch {cfg.batch_size} per process, pose {cfg.pose_condition}, {cfg.loss_weighting} loss, "
        f"{cfg.timestep_sampling} timesteps, tasks {tasks}"
    )


def train(
    cfg: TrainConfig,
    dataset,
    out: Path,
    *,
    max_minutes: float | None = None,
    stop_after: int | None = None,
    init_weights: Path | None = None,
    log=print,
) -> dict:
    """Train (resuming from `out/checkpoint` if present); returns the step reached, the loss log and the
    ranks' `replica_spread`.

    `max_minutes` / `stop_after` (steps in this call) end the run early after
    saving, as an interruption would; the next call resumes from there.
    """
    with setup_errors():  # what the flags build: the user's error, not a bug (`SetupError`)
        sharding.check_fsdp_device()
        # find_unused_parameters: a task without a pose (try-off) leaves the pose embedder without a
        # gradient, and DDP must know that step's unused weights (each rank may draw another task).
        # Under FSDP (an FSDP `accelerate launch` config) accelerate builds its FSDP plugin from the
        # config's fsdp_* settings itself: resharding after forward, auto-wrap of the named layer class.
        accelerator = Accelerator(
            mixed_precision=cfg.mixed_precision,
            cpu=not torch.cuda.is_available(),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        sharded = sharding.is_sharded(accelerator)
        sharding.check_fsdp_version(accelerator)
        rng = np.random.default_rng([cfg.seed, accelerator.process_index])
        # FSDP reduces each unit's gradients over the ranks, which must agree on which weights have one; a
        # task without a pose leaves the pose embedder none, so under FSDP every rank draws the same task
        # (from one stream, seeded alike), each its own samples. DDP finds each rank's unused weights itself.
        task_rng = np.random.default_rng(cfg.seed) if sharded else None
        gen = torch.Generator(accelerator.device).manual_seed(cfg.seed * 1000 + accelerator.process_index)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        out.mkdir(parents=True, exist_ok=True)
        vae, preview_decoder, vae_id = None, None, None
        if cfg.vae is not None:  # a latent canvas: encode the training set once (the main process writes the cache)
            vae = load_vae(cfg.vae).to(accelerator.device)
            vae_id = vae_digest(vae)
            with accelerator.main_process_first():
                dataset = LatentDataset(dataset, vae, out / "latents", pose_condition=cfg.pose_condition, log=log)
            if cfg.preview_vae is not None:
                preview_decoder = load_vae(cfg.preview_vae)
                if latent_channels(preview_decoder) != latent_channels(vae):
                    raise ValueError(
                        f"preview_vae {cfg.preview_vae} has {latent_channels(preview_decoder)} latent channels, "
                        f"the VAE {latent_channels(vae)}; pass the tiny autoencoder of the same latent space"
                    )
            elif not is_cheap_decoder(vae):  # a tiny VAE previews every step by itself
                preview_decoder = fit_preview_map(dataset)
        size_hw = dataset_size_hw(dataset)
        model = build_model(cfg, size_hw, 3 if vae is None else latent_channels(vae))
        if init_weights is not None:  # warm start from a weights file, with a fresh optimiser
            if cfg.backbone != "omfa":
                raise ValueError("--init-weights warm-starts the from-scratch model; FLUX starts from --pretrained")
            load_init_weights(model, init_weights)
        params = trainable_parameters(cfg, model)
        # Under FSDP no EMA: it is a whole fp32 copy updated every step, which would mean gathering the whole
        # model onto one process every step, the traffic and memory FSDP exists to avoid; the exported
        # pipeline then holds the live weights, as a FLUX run's does.
        ema = copy.deepcopy(model).requires_grad_(False) if uses_ema(cfg) and not sharded else None
        if uses_ema(cfg) and sharded and accelerator.is_main_process:
            log("FSDP: no EMA (it would gather the whole model every step); the export holds the live weights")
        whole = sharding.whole_copy(model, accelerator.is_main_process) if sharded else None
        ckpt = out / "checkpoint"
        step = 0
        if (ckpt / "state.json").exists():
            check_resumable(ckpt, cfg, size_hw, vae_id)
            step = load_checkpoint(ckpt, model, ema, rng, gen, task_rng, accelerator.process_index)
        sampler = TaskSampler(dataset, cfg.tasks, cfg.task_weights)
        if accelerator.is_main_process:  # the parameters counted before FSDP shards them
            log(_describe(cfg, model, accelerator, dataset, step, sampler.tasks))
        # fused AdamW: the per-tensor default on CPU spent ~14% of a training step in Python
        adamw = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99), fused=True)
        # under FSDP accelerate shards the model in place and points the optimiser at the shards
        model, opt = accelerator.prepare(model, adamw)
        # accelerate clips FSDP's gradients over the shards only when given all the model's parameters
        clipped = list(model.parameters()) if sharded else params
        warm = lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))  # noqa: E731
        # over the torch optimiser inside accelerate's wrapper, whose step it counts
        sched = torch.optim.lr_scheduler.LambdaLR(opt.optimizer, lambda s: max(warm(s), 0.05))
        if (ckpt / "state.json").exists():
            load_optimizer(ckpt, model, opt, sched, sharded)
        if ema is not None:
            ema.to(accelerator.device)
        abar = alphas_cumprod().to(accelerator.device)

    def save(step: int) -> None:
        """The checkpoint and the exported pipeline, written by the main process; every process first takes
        part in gathering its generators (and under FSDP the whole weights and optimiser state) onto it."""
        gathered = sharding.gather(model, opt, whole) if sharded else None
        rng_states = gather_object([rng_state(rng, gen, task_rng)])  # every rank's, by rank
        if not accelerator.is_main_process:
            return
        live, optimizer_state = gathered or (accelerator.unwrap_model(model), opt.state_dict())
        save_checkpoint(ckpt, step, live, ema, optimizer_state, sched, rng_states, cfg, size_hw, vae_id, sharded)
        export_pipeline(ema if ema is not None else live, out / "pipeline", vae, preview_decoder)

    running: dict[str, list[float]] = {t: [] for t in sampler.tasks}
    start, history, first_step = time.time(), [], step
    while step < cfg.steps:
        if step % 250 == 0 and step > first_step:
            sampler.refresh()
        # 1. a task and a batch of samples that support it
        task, samples = sampler.draw(rng, cfg.batch_size, task_rng)
        batch = collate(task, samples, rng, cfg.pose_condition).to(accelerator.device)
        # 2. partial diffusion: noise the targets, keep the conditions clean
        with accelerator.autocast():
            loss = partial_diffusion_loss(
                model,
                batch,
                gen,
                abar,
                cfg.condition_dropout,
                cfg.full_canvas,
                cfg.loss_weighting,
                cfg.timestep_sampling,
            )
        # 3. the update, then the EMA
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(clipped, cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
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
            stop_after is not None and step - first_step >= stop_after
        )
        if max_minutes is not None and accelerator.num_processes > 1:
            # the clocks of the ranks differ: all stop at the same step, or the others wait in a collective
            timed_out = bool(accelerator.reduce(torch.tensor(float(timed_out), device=accelerator.device), "max"))
        if step % cfg.save_every == 0 or step == cfg.steps or timed_out:
            save(step)
        if timed_out:
            break
    accelerator.wait_for_everyone()
    spread = replica_spread(accelerator, model)
    if spread is not None and accelerator.is_main_process:
        record = {"step": step, "world_size": accelerator.num_processes, "replica_spread": spread}
        log(json.dumps(record))
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
    return {"step": step, "history": history, "replica_spread": spread}


def dry_run(cfg: TrainConfig, dataset, *, log=print) -> dict:
    """Build everything from `cfg`, train exactly two steps into a temporary folder, and load the exported
    pipeline back; nothing is kept. Returns `train`'s result with `exported`: the loaded transformer's class.

    The steps draw from the dataset's first samples only, so a dry run on a whole real dataset does
    not encode all of it into latents first.
    """
    from omfa.pipeline import OMFAPipeline

    short = replace(cfg, steps=2, warmup=1, log_every=1, save_every=2)
    first = [dataset[i] for i in range(min(len(dataset), max(16, 2 * cfg.batch_size)))]
    log(f"dry run: {len(dataset)} samples in {cfg.dataset}; two steps on the first {len(first)}")
    with tempfile.TemporaryDirectory(prefix="omfa-dry-run-") as tmp:
        result = train(short, first, Path(tmp), log=log)
        pipeline = Path(tmp) / "pipeline"
        if (pipeline / "model_index.json").is_file():  # the main process exported it
            device = "cuda" if torch.cuda.is_available() else "cpu"
            loaded = OMFAPipeline.load(pipeline, device=device)
            result["exported"] = type(loaded.transformer).__name__
            h, w = loaded.canvas_hw
            log(f"dry run: {result['step']} steps; the exported pipeline loads ({result['exported']}, {h}x{w} px)")
    return result
