"""Evaluation on held-out samples: the model against baselines (`omfa eval`).

    omfa eval --model assets/omfa-tiny --data data/synth --tasks try_on,try_off,multiview --steps 20 --json

Per task family it reports PSNR and SSIM over the whole image and inside the
person (try-on, multi-view) or garment (try-off) mask, and the mean RGB error
of garment pixels. Baselines see exactly the model's inputs:
  copy-portrait  the input portrait, unchanged (it is already canvas-sized);
  recolour       the pose map's body parts filled with the garments' mean colours
                 (and the portrait's skin colour);
  mean-garment   (try-off) the training split's mean shop image of that garment type.
It also reports preview convergence: PSNR of the step-k preview against the final image.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from skimage.metrics import structural_similarity

from omfa.canvas import sample_tasks

FAMILIES: dict[str, tuple[str, ...]] = {
    "try_on": ("try_on_upper", "try_on_lower", "outfit"),
    "try_off": ("try_off_upper", "try_off_lower"),
    "multiview": ("multiview",),
}
UPPER_LABEL, LOWER_LABEL, SKIN_LABEL = 3, 4, 1


# ----------------------------------------------------------------------------
# Metrics on uint8 (H, W, 3) images


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over all pixels, or over `mask` (H, W) bool."""
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = err[mask].mean() if mask is not None else err.mean()
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SSIM (7x7 windows, per channel), averaged over all pixels or over `mask`."""
    _, full = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    smap = full.mean(axis=2)
    return float(smap[mask].mean() if mask is not None else smap.mean())


def colour_error(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean RGB distance (0-255 units) between the images on the garment pixels."""
    diff = a.astype(np.float64)[mask] - b.astype(np.float64)[mask]
    return float(np.linalg.norm(diff, axis=-1).mean()) if mask.any() else float("nan")


# ----------------------------------------------------------------------------
# Cases: one model input and its exact ground truth


@dataclass
class Case:
    task: str
    inputs: dict[str, np.ndarray]  # reference / upper / lower / pose
    target_slot: str
    truth: np.ndarray
    region: np.ndarray  # person or garment mask (H, W) bool
    garment: np.ndarray  # garment pixels (H, W) bool
    labels_reference: np.ndarray | None


def cases_from_sample(sample: dict, families: Iterable[str]) -> list[Case]:
    supported = set(sample_tasks(sample))
    ref = sample["reference"]
    out = []
    for family in families:
        for task in FAMILIES[family]:
            if task not in supported:
                continue
            labels_ref = sample.get("labels_reference")
            if task.startswith("try_on") or task == "outfit":
                garments = {"try_on_upper": ("upper",), "try_on_lower": ("lower",), "outfit": ("upper", "lower")}[task]
                labels = sample["labels_person"]
                garment = np.isin(labels, [UPPER_LABEL if g == "upper" else LOWER_LABEL for g in garments])
                inputs = {"reference": ref, "pose": sample["pose"]} | {g: sample[f"{g}_b"] for g in garments}
                out.append(Case(task, inputs, "person", sample["person"], labels > 0, garment, labels_ref))
            elif task == "multiview":
                labels = sample["labels_person_same"]
                out.append(Case(task, {"reference": ref, "pose": sample["pose"]}, "person", sample["person_same"],
                                labels > 0, np.isin(labels, [UPPER_LABEL, LOWER_LABEL]), labels_ref))
            else:
                slot = task.removeprefix("try_off_")
                mask = sample[f"mask_{slot}_a"].astype(bool)
                out.append(Case(task, {"reference": ref}, slot, sample[f"{slot}_a"], mask, mask, labels_ref))
    return out


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
    ref_upper = _mean_colour(ref, labels == UPPER_LABEL) if labels is not None else _mean_colour(ref, ref.min(-1) < 250)
    ref_lower = _mean_colour(ref, labels == LOWER_LABEL) if labels is not None else ref_upper
    skin = _mean_colour(ref, labels == SKIN_LABEL, (200, 160, 130)) if labels is not None else np.array([200, 160, 130.0])
    if case.target_slot != "person":
        out = np.full_like(case.truth, 255)
        colour = ref_upper if case.target_slot == "upper" else ref_lower
        out[case.region if silhouette is None else silhouette] = colour.round().astype(np.uint8)
        return out
    upper = _mean_colour(case.inputs["upper"], case.inputs["upper"].min(-1) < 250) if "upper" in case.inputs else ref_upper
    lower = _mean_colour(case.inputs["lower"], case.inputs["lower"].min(-1) < 250) if "lower" in case.inputs else ref_lower
    parts = _parts_from_pose_map(case.inputs["pose"])
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
        f"{s}_silhouette": masks[s] / n > 0.5 for s in masks}


# ----------------------------------------------------------------------------
# The evaluation loop


def _scores(pred: np.ndarray, case: Case) -> dict[str, float]:
    return {
        "psnr": psnr(pred, case.truth),
        "ssim": ssim(pred, case.truth),
        "psnr_mask": psnr(pred, case.truth, case.region),
        "ssim_mask": ssim(pred, case.truth, case.region),
        "colour_err": colour_error(pred, case.truth, case.garment),
    }


def model_predictor(pipe, steps: int, guidance: float, seed: int, convergence: dict) -> Callable[[Case], np.ndarray]:
    """A predictor running the pipeline; it also accumulates per-step preview PSNR against the final image."""

    def predict(case: Case) -> np.ndarray:
        previews = [
            p.images[case.target_slot]
            for p in pipe.stream(case.task, **case.inputs,
                                 num_inference_steps=steps, guidance_scale=guidance,
                                 generator=torch.Generator(pipe.device).manual_seed(seed))
        ]
        final = np.asarray(previews[-1])
        for k, p in enumerate(previews):
            convergence.setdefault(k, []).append(psnr(np.asarray(p), final) if k < len(previews) - 1 else float("inf"))
        return final

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
            for k, v in _scores(pred, case).items():
                table.setdefault(fam, {}).setdefault(name, {}).setdefault(k, []).append(v)
    return {fam: {m: {k: round(float(np.nanmean(v)), 4) for k, v in ms.items()} | {"n": len(ms["psnr"])}
                  for m, ms in methods.items()} for fam, methods in table.items()}


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


def main(argv: list[str]) -> int:
    from omfa.data.shards import ShardDataset
    from omfa.pipeline import OMFAPipeline

    parser = argparse.ArgumentParser(prog="omfa eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="checkpoint folder; repeat to compare models (NAME=DIR names a model)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--tasks", default="try_on,try_off,multiview")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--limit", type=int, default=None, help="evaluate N samples")
    parser.add_argument("--every", type=int, default=1,
                        help="take every k-th sample (8 on the test split: one view of each multi-view group)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet of results (first model)")
    parser.add_argument("--sheet-rows", type=int, default=8)
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.tasks.split(",")]
    for f in families:
        if f not in FAMILIES:
            parser.error(f"unknown task family {f!r}; choose from {', '.join(FAMILIES)}")
    data = ShardDataset(args.data, args.split)
    indices = sample_indices(len(data), args.every, args.limit)
    n = len(indices)
    cases = [c for i in indices for c in cases_from_sample(data[i], families)]
    predictors: dict[str, Callable] = {}
    if not args.no_baselines:
        predictors |= baselines(mean_garments(ShardDataset(args.data, "train")))
    convergence: dict[str, dict[int, list[float]]] = {}
    pipes = {}
    for spec in args.model:
        name, _, path = str(spec).rpartition("=") if "=" in str(spec) else ("omfa", "", str(spec))
        pipe = pipes[name] = OMFAPipeline.load(path)
        convergence[name] = {}
        predictors[name] = model_predictor(pipe, args.steps, args.guidance, args.seed, convergence[name])
    start = time.time()
    if args.sheet:
        from PIL import Image

        first = model_predictor(next(iter(pipes.values())), args.steps, args.guidance, args.seed, {})
        picked = spread_cases(cases, args.sheet_rows)
        Image.fromarray(results_sheet(first, picked)).save(args.sheet)
    result = {"split": args.split, "samples": n, "steps": args.steps, "table": evaluate(predictors, cases),
              "preview_psnr_by_step": {m: [round(float(np.mean(v)), 2) for _, v in sorted(c.items())][:-1]
                                       for m, c in convergence.items()},
              "seconds": round(time.time() - start, 1)}
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result["table"]))
    return 0


def format_table(table: dict) -> str:
    """A markdown table: one row per (family, method)."""
    keys = ["psnr", "ssim", "psnr_mask", "ssim_mask", "colour_err", "n"]
    lines = ["| task | method | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for fam, methods in table.items():
        for m, s in methods.items():
            lines.append(f"| {fam} | {m} | " + " | ".join(str(s.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)
