"""Evaluation on held-out samples: the model against baselines (`omfa eval`).

    omfa eval --model assets/omfa-tiny --data data/synth --tasks try_on,try_off,multiview --steps 20 --json

Per task family it reports (definitions in `omfa.training.metrics`) PSNR and
SSIM over the whole image and inside the person (try-on, multi-view) or
garment (try-off) mask, the mean RGB error of garment pixels, the pattern
fidelity of the garment (high-pass correlation) and, for try-off, the IoU of
the predicted garment's silhouette. Baselines see exactly the model's inputs:
  copy-portrait  the input portrait, unchanged (it is already canvas-sized);
  recolour       the part-colour pose map's body parts filled with the garments' mean
                 colours (and the portrait's skin colour);
  mean-garment   (try-off) the training split's mean shop image of that garment type.
Each model gets the pose condition of its own config ("parts" or "surface");
the recolour baseline always reads the part-colour map, whose colours name
the body parts. It also reports preview convergence: PSNR of the step-k
preview against the final image.

`--denoise-at 0.05,0.3,0.9` scores, instead of sampling, each model's one-step x0
estimate from the ground truth noised to each time t (rows "MODEL@t"): how much of a
garment's print and silhouette the model recovers at each noise level, which tells
where sampling loses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from omfa.canvas import tensor_to_image
from omfa.data.examples import FAMILIES, LABELS, Case, cases_from_sample
from omfa.pose.condition import DEFAULT_POSE_CONDITION
from omfa.training.metrics import colour_error, pattern_fidelity, psnr, silhouette_iou, ssim

METRICS: tuple[str, ...] = ("psnr", "ssim", "psnr_mask", "ssim_mask", "colour_err", "pattern", "iou")


# ----------------------------------------------------------------------------
# Baselines


def _mean_colour(image: np.ndarray, mask: np.ndarray, fallback=(128, 128, 128)) -> np.ndarray:
    return image[mask].mean(axis=0) if mask.any() else np.array(fallback, dtype=np.float64)


def _parts_from_pose_map(pose: np.ndarray) -> np.ndarray:
    """Pose map (H, W, 3) -> part index per pixel (-1 background), by nearest palette colour."""
    from omfa.pose.body import PART_NAMES
    from omfa.pose.render import PART_COLORS

    palette = np.asarray([PART_COLORS[name] for name in PART_NAMES], dtype=np.float64)
    dist = ((pose[..., None, :].astype(np.float64) - palette) ** 2).sum(-1)
    parts = dist.argmin(-1)
    parts[pose.max(axis=-1) < 16] = -1
    return parts


def recolour_baseline(case: Case, silhouette: np.ndarray | None = None) -> np.ndarray:
    """Try-on / multi-view: the pose map filled with garment and skin colours.
    Try-off: the portrait's garment colour inside `silhouette` (the train split's mean garment
    silhouette; without it, the ground-truth garment region)."""
    from omfa.pose.body import PART_NAMES

    ref, labels = case.inputs["reference"], case.labels_reference
    ref_upper = (
        _mean_colour(ref, labels == LABELS["upper"]) if labels is not None else _mean_colour(ref, ref.min(-1) < 250)
    )
    ref_lower = _mean_colour(ref, labels == LABELS["lower"]) if labels is not None else ref_upper
    skin = (
        _mean_colour(ref, labels == LABELS["skin"], (200, 160, 130))
        if labels is not None
        else np.array([200, 160, 130.0])
    )
    if case.target_slot != "person":
        out = np.full_like(case.truth, 255)
        colour = ref_upper if case.target_slot == "upper" else ref_lower
        out[case.region if silhouette is None else silhouette] = colour.round().astype(np.uint8)
        return out
    upper = (
        _mean_colour(case.inputs["upper"], case.inputs["upper"].min(-1) < 250) if "upper" in case.inputs else ref_upper
    )
    lower = (
        _mean_colour(case.inputs["lower"], case.inputs["lower"].min(-1) < 250) if "lower" in case.inputs else ref_lower
    )
    parts = _parts_from_pose_map(case.inputs["pose"])  # always the part-colour map, whatever the models see
    out = np.full((*parts.shape, 3), 255, dtype=np.uint8)
    for i, name in enumerate(PART_NAMES):
        if "arm" in name or name == "torso":
            colour = upper
        elif "thigh" in name or "shin" in name:
            colour = lower
        else:
            colour = skin
        out[parts == i] = colour.round().astype(np.uint8)
    return out


def mean_garments(dataset, limit: int = 300) -> dict[str, np.ndarray]:
    """Mean shop image and mean silhouette per garment slot over (part of) a split."""
    sums = {s: np.zeros((*dataset[0]["upper_a"].shape,), np.float64) for s in ("upper", "lower")}
    masks = {s: np.zeros(dataset[0]["upper_a"].shape[:2], np.float64) for s in ("upper", "lower")}
    n = min(limit, len(dataset))
    for i in range(n):
        item = dataset[i]
        for s in sums:
            sums[s] += item[f"{s}_a"]
            masks[s] += item[f"mask_{s}_a"] > 0
    return {s: (sums[s] / n).round().astype(np.uint8) for s in sums} | {
        f"{s}_silhouette": masks[s] / n > 0.5 for s in masks
    }


# ----------------------------------------------------------------------------
# The evaluation loop


def scores(pred: np.ndarray, case: Case) -> dict[str, float]:
    """Every metric of one prediction (`METRICS`; "iou" for try-off cases only)."""
    out = {
        "psnr": psnr(pred, case.truth),
        "ssim": ssim(pred, case.truth),
        "psnr_mask": psnr(pred, case.truth, case.region),
        "ssim_mask": ssim(pred, case.truth, case.region),
        "colour_err": colour_error(pred, case.truth, case.garment),
        "pattern": pattern_fidelity(pred, case.truth, case.garment),
    }
    if case.target_slot != "person":  # a shop image: its silhouette is the garment's
        out["iou"] = silhouette_iou(pred, case.region)
    return out


def pose_condition_of(model) -> str:
    """The pose condition a model was trained with (checkpoints that do not name one used part colours)."""
    return getattr(model.config, "pose_condition", DEFAULT_POSE_CONDITION)


def model_predictor(
    pipe, steps: int, guidance: float, seed: int, convergence: dict, scheduler: str | None = None
) -> Callable[[Case], np.ndarray]:
    """A predictor running the pipeline (with `scheduler`, default the pipeline's own); it also
    accumulates per-step preview PSNR against the final image.

    The model sees the pose map of the kind it was trained with.
    """
    pose_condition = pose_condition_of(pipe.transformer)

    def predict(case: Case) -> np.ndarray:
        previews = [
            p.images[case.target_slot]
            for p in pipe.stream(
                case.task,
                **case.model_inputs(pose_condition),
                num_inference_steps=steps,
                guidance_scale=guidance,
                scheduler=scheduler,
                generator=torch.Generator(pipe.device).manual_seed(seed),
                preview_every=1,  # every step's preview, for the convergence curve (a latent model may skip)
            )
        ]
        final = np.asarray(previews[-1])
        for k, p in enumerate(previews):
            convergence.setdefault(k, []).append(psnr(np.asarray(p), final) if k < len(previews) - 1 else float("inf"))
        return final

    return predict


def denoise_predictor(pipe, t: float, seed: int) -> Callable[[Case], np.ndarray]:
    """A predictor giving the model's one-step x0 estimate from the case's truth noised to time `t`
    (`OMFAPipeline.denoise_once`); each case draws its noise from a generator seeded with `seed`."""
    pose_condition = pose_condition_of(pipe.transformer)

    def predict(case: Case) -> np.ndarray:
        generator = torch.Generator(pipe.device).manual_seed(seed)
        x0 = pipe.denoise_once(case.task, case.truth, t, generator=generator, **case.model_inputs(pose_condition))
        return tensor_to_image(x0)

    return predict


def evaluate(predictors: dict[str, Callable[[Case], np.ndarray]], cases: list[Case]) -> dict:
    """{family: {method: mean metrics}} over the cases (NaN-safe means)."""
    family_of = {t: f for f, ts in FAMILIES.items() for t in ts}
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    for case in cases:
        fam = family_of[case.task]
        for name, predict in predictors.items():
            pred = predict(case)
            if pred is None:
                continue
            for k, v in scores(pred, case).items():
                table.setdefault(fam, {}).setdefault(name, {}).setdefault(k, []).append(v)
    return {
        fam: {
            m: {k: round(float(np.nanmean(v)), 4) for k, v in ms.items()} | {"n": len(ms["psnr"])}
            for m, ms in methods.items()
        }
        for fam, methods in table.items()
    }


def baselines(means: dict[str, np.ndarray] | None) -> dict[str, Callable[[Case], np.ndarray | None]]:
    def copy_portrait(case: Case) -> np.ndarray:
        return case.inputs["reference"]

    def recolour(case: Case) -> np.ndarray:
        silhouette = None if case.target_slot == "person" or means is None else means[f"{case.target_slot}_silhouette"]
        return recolour_baseline(case, silhouette)

    def mean_garment(case: Case) -> np.ndarray | None:
        return None if case.target_slot == "person" or means is None else means[case.target_slot]

    return {"copy-portrait": copy_portrait, "recolour": recolour, "mean-garment": mean_garment}


def spread_cases(cases: list[Case], rows: int) -> list[Case]:
    """Up to `rows` cases taking task families in turn, each from a different sample where possible."""
    family_of = {t: f for f, ts in FAMILIES.items() for t in ts}
    queues: dict[str, list[Case]] = {}
    for case in cases:
        queues.setdefault(family_of[case.task], []).append(case)
    stride = {f: max(1, len(q) // max(1, rows // len(queues))) for f, q in queues.items()}
    queues = {f: q[:: stride[f]] for f, q in queues.items()}
    picked: list[Case] = []
    while len(picked) < rows and any(queues.values()):
        for q in queues.values():
            if q and len(picked) < rows:
                picked.append(q.pop(0))
    return picked


def results_sheet(predict: Callable[[Case], np.ndarray], cases: list[Case]) -> np.ndarray:
    """Contact sheet of test results: portrait, garment given, pose, output, ground truth per row."""
    from omfa.data.sheet import grid_sheet

    rows, captions = [], []
    for case in cases:
        blank = np.full_like(case.truth, 255)
        garment = case.inputs.get("upper", case.inputs.get("lower", blank))
        rows.append([case.inputs["reference"], garment, case.inputs.get("pose", blank), predict(case), case.truth])
        captions.append(tuple(case.task.split("_", 2)))
    return grid_sheet(rows, ["portrait", "garment", "pose", "output", "ground truth"], captions)


def sample_indices(length: int, every: int, limit: int | None) -> list[int]:
    """Every `every`-th sample index (8 on the test split: one view per multi-view group), at most `limit`."""
    return list(range(0, length, max(1, every)))[:limit]


def evaluate_models(
    models: list[str],
    data: str | Path,
    *,
    split: str = "test",
    families: tuple[str, ...] = tuple(FAMILIES),
    steps: int = 20,
    guidance: float = 2.0,
    limit: int | None = None,
    every: int = 1,
    seed: int = 0,
    with_baselines: bool = True,
    sheet: Path | None = None,
    sheet_rows: int = 8,
    train_data: str | Path | None = None,
    denoise_at: tuple[float, ...] = (),
) -> dict:
    """Score pipelines (`models`: folders, or NAME=FOLDER) and the baselines on a split of a synthetic dataset.

    Returns {"table": {family: {method: metrics}}, "preview_psnr_by_step", ...};
    `sheet` also writes a contact sheet of the first model's results. The mean-garment
    baseline averages the train split of `train_data` (default: `data`), so a test-only
    dataset (a fresh test set) is scored against the models' own training data. With
    `denoise_at`, each model is scored by its one-step estimate at each t instead of sampling.
    """
    from omfa.data.shards import ShardDataset
    from omfa.pipeline import OMFAPipeline

    for family in families:
        if family not in FAMILIES:
            raise ValueError(f"unknown task family {family!r}; choose from {', '.join(FAMILIES)}")
    if sheet is not None and not models:
        raise ValueError("a results sheet shows a model's outputs; pass at least one model")
    dataset = ShardDataset(data, split)
    indices = sample_indices(len(dataset), every, limit)
    cases = [c for i in indices for c in cases_from_sample(dataset[i], families)]
    predictors: dict[str, Callable] = {}
    if with_baselines:
        train_split = ShardDataset(train_data if train_data is not None else data, "train")
        if not len(train_split):
            raise ValueError(
                f"{train_split.root} has no train samples for the mean-garment baseline; "
                "pass the models' training data with --train-data DIR"
            )
        predictors |= baselines(mean_garments(train_split))
    convergence: dict[str, dict[int, list[float]]] = {}
    pipes = {}
    for spec in models:
        name, _, path = str(spec).rpartition("=") if "=" in str(spec) else ("omfa", "", str(spec))
        pipe = pipes[name] = OMFAPipeline.load(path)
        if tuple(pipe.canvas_hw) != dataset.size_hw:
            raise ValueError(
                f"model {path} works on {pipe.canvas_hw[0]}x{pipe.canvas_hw[1]} px images but {data} "
                f"has {dataset.size_hw[0]}x{dataset.size_hw[1]}; evaluate it on a dataset of its size "
                "(omfa synth --size HxW)"
            )
        if denoise_at:
            predictors |= {f"{name}@t={t:g}": denoise_predictor(pipe, t, seed) for t in denoise_at}
            continue
        convergence[name] = {}
        predictors[name] = model_predictor(pipe, steps, guidance, seed, convergence[name])
    start = time.time()
    if sheet is not None:
        from PIL import Image

        first = model_predictor(next(iter(pipes.values())), steps, guidance, seed, {})
        Image.fromarray(results_sheet(first, spread_cases(cases, sheet_rows))).save(sheet)
    return {
        "split": split,
        "samples": len(indices),
        "steps": steps,
        "table": evaluate(predictors, cases),
        "preview_psnr_by_step": {
            m: [round(float(np.mean(v)), 2) for _, v in sorted(c.items())][:-1] for m, c in convergence.items()
        },
        "seconds": round(time.time() - start, 1),
    }


def format_table(table: dict) -> str:
    """A markdown table: one row per (family, method)."""
    keys = [*METRICS, "n"]
    lines = ["| task | method | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for fam, methods in table.items():
        for m, s in methods.items():
            lines.append(f"| {fam} | {m} | " + " | ".join(str(s.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)
