"""Ablations at equal compute (`omfa ablate`): what partial diffusion and its design buy.

    omfa ablate --data data/synth --out runs/ablations --preset tiny --steps 1500 --json

Five models of one preset train from the same seed for the same number of steps
and batch size, then run on the same held-out test samples:
  partial                   the OMFA recipe: targets noised, conditions clean, all tasks
  full-canvas               every slot noised at one timestep; at sampling the conditions
                            are re-noised to the current timestep and put back each step
  full-condition-attention  conditions attend to each other (the cache is no longer exact)
  try-on-only               a single-direction model: try-on and outfit tasks only
  try-off-only              a single-direction model: try-off tasks only
and the levers of sample efficiency, each the partial recipe with one change:
  surface-pose              the dense-correspondence pose condition (rest-body surface
                            coordinates per pixel) instead of part colours
  min-snr                   min-SNR-5 loss weighting instead of uniform x0 MSE
  surface-min-snr           both
Training resumes per variant (each has its own run folder), so an interrupted
ablation continues where it stopped. Every model samples with the same
scheduler, steps and seed, and without guidance: the full-canvas model has no
unconditional branch to guide with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from omfa.canvas import SLOT_INDEX, get_task, image_to_tensor, tensor_to_image
from omfa.data.examples import Case, cases_from_sample
from omfa.diffusion import NUM_TRAIN_TIMESTEPS, add_noise, alphas_cumprod, make_scheduler, sample
from omfa.training.evaluate import evaluate, model_predictor, pose_condition_of, sample_indices
from omfa.training.loop import CONFIGS, TrainConfig, train

TRY_ON = ("try_on_upper", "try_on_lower", "outfit")
TRY_OFF = ("try_off_upper", "try_off_lower", "try_off_outfit")

# variant -> (TrainConfig overrides, task families it is scored on)
ALL_FAMILIES = ("try_on", "try_off", "multiview")
VARIANTS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "partial": ({}, ALL_FAMILIES),
    "full-canvas": ({"full_canvas": True}, ("try_on", "try_off")),
    "full-condition-attention": ({"local_condition_attention": False}, ("try_on", "try_off")),
    "try-on-only": ({"tasks": TRY_ON}, ("try_on",)),
    "try-off-only": ({"tasks": TRY_OFF}, ("try_off",)),
    "surface-pose": ({"pose_condition": "surface"}, ALL_FAMILIES),
    "min-snr": ({"loss_weighting": "min_snr"}, ALL_FAMILIES),
    "surface-min-snr": ({"pose_condition": "surface", "loss_weighting": "min_snr"}, ALL_FAMILIES),
}


def variant_config(base: TrainConfig, name: str) -> TrainConfig:
    if name not in VARIANTS:
        raise ValueError(f"unknown ablation {name!r}; choose from {', '.join(VARIANTS)}")
    return replace(base, **VARIANTS[name][0])


def full_canvas_predictor(model, steps: int, seed: int) -> Callable[[Case], np.ndarray]:
    """Sampling for a full-canvas model: every slot is a target at one shared timestep.

    The conditions are known, so at each step they are replaced by their clean
    image noised to the current timestep with one fixed noise draw (replacement
    conditioning); only the real targets' x0 is kept.
    """
    abar = alphas_cumprod()
    pose_condition = pose_condition_of(model)

    @torch.no_grad()
    def predict(case: Case) -> np.ndarray:
        spec = get_task(case.task)
        targets, _ = spec.slot_indices()
        cond_names = list(spec.conditions)
        inputs = case.model_inputs(pose_condition)
        conds = torch.stack([image_to_tensor(inputs[s]) for s in cond_names])[None]
        pose = image_to_tensor(inputs["pose"])[None] if spec.uses_pose else None
        gen = torch.Generator().manual_seed(seed)
        cond_noise = torch.randn(conds.shape, generator=gen)
        slots = targets + [SLOT_INDEX[s] for s in cond_names]

        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            index = (t * NUM_TRAIN_TIMESTEPS).round().long().clamp(0, NUM_TRAIN_TIMESTEPS - 1)
            noisy = add_noise(conds, index, cond_noise, abar)
            return model(torch.cat([x_t, noisy], dim=1), slots, t, None, (), pose)[:, : len(targets)]

        shape = (1, len(targets), *conds.shape[2:])
        *_, last = sample(denoise, shape, make_scheduler("ddim"), steps, gen)
        return tensor_to_image(last.x0[0, spec.targets.index(case.target_slot)])

    return predict


def run_variant(name: str, base: TrainConfig, dataset, out: Path, max_minutes: float | None) -> dict:
    cfg = variant_config(base, name)
    return train(
        cfg, dataset, out / name, max_minutes=max_minutes, log=lambda line: print(f"[{name}] {line}", flush=True)
    )


def predictor_for(name: str, run: Path, steps: int, seed: int) -> Callable[[Case], np.ndarray]:
    from omfa.pipeline import OMFAPipeline

    pipe = OMFAPipeline.load(run / "pipeline", device="cpu")
    if VARIANTS[name][0].get("full_canvas"):
        return full_canvas_predictor(pipe.transformer, steps, seed)
    return model_predictor(pipe, steps, guidance=1.0, seed=seed, convergence={})


def ablate(
    data: str | Path,
    out: Path,
    *,
    preset: str = "tiny",
    steps: int = 1500,
    batch_size: int = 16,
    variants: tuple[str, ...] = tuple(VARIANTS),
    max_minutes: float | None = None,
    eval_steps: int = 20,
    limit: int | None = 25,
    eval_only: bool = False,
    in_memory: bool = False,
) -> dict:
    """Train (or resume) each variant into `out/<variant>`, then score all on the same test samples.

    Returns {"table": {family: {variant: metrics}}, "train_steps", ...}. Raises
    FileNotFoundError for a variant with no trained model under `eval_only`.
    """
    from omfa.data.shards import ShardDataset

    base = replace(
        CONFIGS["small-cpu"], preset=preset, steps=steps, batch_size=batch_size, warmup=max(1, min(500, steps // 10))
    )
    for name in variants:
        variant_config(base, name)  # fail on a typo before hours of training
    if not eval_only:
        train_set = ShardDataset(data, "train")
        if in_memory:
            train_set = [train_set[i] for i in range(len(train_set))]
        for name in variants:
            run_variant(name, base, train_set, out, max_minutes)
    test = ShardDataset(data, "test")
    samples = [test[i] for i in sample_indices(len(test), 8, limit)]
    table: dict = {}
    for name in variants:
        run = out / name
        if not (run / "pipeline" / "model_index.json").is_file():
            raise FileNotFoundError(f"{run} has no trained model; run without --eval-only first")
        cases = [c for s in samples for c in cases_from_sample(s, VARIANTS[name][1])]
        for family, methods in evaluate({name: predictor_for(name, run, eval_steps, 0)}, cases).items():
            table.setdefault(family, {}).update(methods)
    steps_done = {n: json.loads((out / n / "checkpoint" / "state.json").read_text())["step"] for n in variants}
    return {
        "preset": preset,
        "train_steps": steps_done,
        "batch_size": batch_size,
        "samples": len(samples),
        "eval_steps": eval_steps,
        "table": table,
    }
