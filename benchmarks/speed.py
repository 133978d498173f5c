"""Request speed and the sampler's quality per second (`omfa bench request`, `omfa bench steps`).

`omfa bench request --json` runs the same try-on through the app's own code
(`StudioContext`, `stream_try_on`, the Gradio handler's frame encoding
`stream_frames`) under two configurations, alternating them so that drift
on a shared machine hits both alike:
- *before*: fp32 weights, 20 DDIM steps, every streamed image enlarged 3x
  (Lanczos) and encoded on the server, u2netp at rembg's 320x320, as the app
  did before;
- *now*: the app's defaults: `--precision auto` (bf16 where native), the
  denoiser compiled (`omfa.acceleration`; the warm-up is finished before
  timing), `RunSettings()`'s sampler and steps, canvas-size frames, u2netp
  at `U2NETP_SIZE`.
A *warm* request reuses prepared uploads (the same photos again); a *cold*
one brings photos never seen (new bytes: the matting, framing and pose
estimation run). Each configuration's quality (masked PSNR and SSIM,
pattern fidelity) is measured on the test split with its own sampler
settings and precision.

`omfa bench steps --json` scores every sampler at several step counts on
the test split (quality and seconds per image, the served precision): the
table the defaults in `omfa.studio.settings` are chosen from.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from omfa.acceleration import compile_enabled
from omfa.app.blocks import stream_frames
from omfa.app.files import AppFiles, FileStore
from omfa.imaging.matting import U2NETP_SIZE, U2NetP
from omfa.pipeline import DEFAULT_MODEL_DIR, OMFAPipeline
from omfa.studio.context import EXAMPLES_DIR, StudioContext
from omfa.studio.runs import PoseChoice, stream_try_on
from omfa.studio.settings import TRY_OFF_DEFAULTS, RunSettings

SHOWN = ("result", "reference", "upper", "lower", "pose")  # the try-on tab's images (omfa.app.blocks)
FAMILIES = ("try_on", "try_off", "multiview")
STEP_GRID: dict[str, tuple[int, ...]] = {"ddim": (4, 6, 8, 10, 12, 16, 20), "euler": (8, 12, 20), "dpm++": (8, 12, 20)}


@dataclass(frozen=True)
class Config:
    """How a request is served: the weights' precision, compilation, the sampler, the frames' size."""

    name: str
    precision: str
    compile: bool
    settings: RunSettings
    enlarge: int = 1  # streamed images enlarged this many times on the server before encoding
    matting_size: int = U2NETP_SIZE  # u2netp's input side for background removal (before: rembg's 320)
    try_off_settings: RunSettings | None = None  # the Try-Off tab's own sampler settings (None: `settings`)

    def describe(self) -> dict:
        s = self.settings
        return {
            "precision": self.precision,
            "compile": self.compile,
            "scheduler": s.scheduler,
            "steps": s.steps,
            "guidance": s.guidance,
            "frames": "canvas size" if self.enlarge == 1 else f"enlarged {self.enlarge}x on the server",
            "matting_size": self.matting_size,
        } | ({"try_off": f"{t.scheduler} {t.steps}"} if (t := self.try_off_settings) else {})


BEFORE = Config(
    "before", "fp32", False, RunSettings(steps=20, guidance=2.0, seed=0, scheduler="ddim"), enlarge=3, matting_size=320
)
NOW = Config("now", "auto", True, RunSettings(), try_off_settings=TRY_OFF_DEFAULTS)


class EnlargingStore(FileStore):
    """The file store as the app used it before: every image enlarged (Lanczos) before its PNG."""

    def __init__(self, scale: int) -> None:
        super().__init__(".png")
        self.scale = scale

    def png(self, image: np.ndarray) -> str:
        if self.scale > 1:
            h, w = image.shape[:2]
            image = np.asarray(
                Image.fromarray(image).resize((w * self.scale, h * self.scale), Image.Resampling.LANCZOS)
            )
        return super().png(image)


def load_pipe(model: Path, precision: str, compile: bool) -> OMFAPipeline:
    """The checkpoint at a precision; compiled for every task (the warm-up finished) when asked."""
    pipe = OMFAPipeline.load(model, device="cpu", precision=precision)
    if compile and compile_enabled("auto", pipe.device):
        pipe.compile(guidance_scale=RunSettings.guidance, background=False)
    return pipe


def _request(ctx: StudioContext, files: AppFiles, portrait: str, garment: str, settings: RunSettings):
    """One try-on through the app's handler code: (seconds, seconds to the first denoising preview)."""
    ctx.pipe.condition_cache.clear()  # every request pays for its conditions' keys
    start = time.perf_counter()
    first = None
    frames = stream_frames(
        lambda: stream_try_on(ctx, portrait, [(garment, "upper")], PoseChoice("preset", "walking"), settings),
        SHOWN,
        files,
        lambda *args, **kwargs: None,  # gr.Progress outside a request
    )
    for values in frames:
        if first is None and ": step " in values[-1]:
            first = time.perf_counter() - start
    return time.perf_counter() - start, first


def _fresh_copy(path: Path, folder: Path, k: int) -> str:
    """A copy of an example photo with one pixel changed: new bytes, so nothing prepared is reused."""
    rgb = np.asarray(Image.open(path).convert("RGB")).copy()
    rgb[0, 0] = (k * 7 % 256, k * 13 % 256, k * 29 % 256)
    out = folder / f"{path.stem}-{k}.png"
    Image.fromarray(rgb).save(out)
    return str(out)


def quality(
    pipe: OMFAPipeline,
    settings: RunSettings,
    data: Path,
    every: int,
    limit: int,
    try_off: RunSettings | None = None,
) -> dict:
    """{family: {psnr_mask, ssim_mask, pattern, iou?, n}} plus seconds per image, on the test split;
    try-off cases with `try_off`'s sampler settings when given (the app's Try-Off tab has its own)."""
    from omfa.data.examples import cases_from_sample
    from omfa.data.shards import ShardDataset
    from omfa.training.evaluate import evaluate, model_predictor, sample_indices

    dataset = ShardDataset(data, "test")
    if not len(dataset):
        raise ValueError(f"{data} has no test split; generate it with `omfa synth --out {data}`")
    cases = [c for i in sample_indices(len(dataset), every, limit) for c in cases_from_sample(dataset[i], FAMILIES)]
    predictors = {
        name: model_predictor(pipe, s.steps, s.guidance, s.seed, {}, s.scheduler)
        for name, s in (("try_on", settings), ("try_off", try_off or settings))
    }
    seconds: list[float] = []

    def timed(case):
        start = time.perf_counter()
        out = predictors["try_off" if case.target_slot != "person" else "try_on"](case)
        seconds.append(time.perf_counter() - start)
        return out

    table = evaluate({"model": timed}, cases)
    keep = ("psnr_mask", "ssim_mask", "pattern", "iou", "n")
    result = {fam: {k: v for k, v in methods["model"].items() if k in keep} for fam, methods in table.items()}
    return result | {"s_per_image": round(float(np.mean(seconds)), 4)}


def bench_request(model: Path, repeats: int, data: Path | None, every: int, limit: int) -> dict:
    """Warm and cold try-ons, before against now, side by side; the quality of each on the test split."""
    configs = (BEFORE, NOW)
    contexts = {c.name: StudioContext(load_pipe(model, c.precision, c.compile)) for c in configs}
    for c in configs:
        contexts[c.name].u2netp = U2NetP(size=c.matting_size)
    stores = {c.name: AppFiles() for c in configs}
    for c in configs:
        stores[c.name].images = EnlargingStore(c.enlarge)
    portrait, garment = EXAMPLES_DIR / "portrait.png", EXAMPLES_DIR / "top.png"
    timings: dict[str, dict[str, list]] = {c.name: {"warm": [], "cold": []} for c in configs}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for c in configs:  # warm-up: models, allocator, the examples prepared once
                _request(contexts[c.name], stores[c.name], str(portrait), str(garment), c.settings)
            for k in range(repeats):
                for c in configs:
                    ctx, files = contexts[c.name], stores[c.name]
                    timings[c.name]["warm"].append(_request(ctx, files, str(portrait), str(garment), c.settings))
                    fresh = [_fresh_copy(p, Path(tmp), 2 * k + (c is NOW)) for p in (portrait, garment)]
                    timings[c.name]["cold"].append(_request(ctx, files, *fresh, c.settings))
        best = {n: {kind: min(runs, key=lambda r: r[0]) for kind, runs in t.items()} for n, t in timings.items()}
        result: dict = {"bench": "request", "model": str(model), "repeats": repeats}
        for c in configs:
            b = best[c.name]
            result[c.name] = c.describe() | {
                "warm_s": round(b["warm"][0], 4),
                "cold_s": round(b["cold"][0], 4),
                "first_preview_frac_warm": round(b["warm"][1] / b["warm"][0], 3),
                "first_preview_frac_cold": round(b["cold"][1] / b["cold"][0], 3),
            }
            if data is not None:
                result[c.name]["quality"] = quality(
                    contexts[c.name].pipe, c.settings, data, every, limit, c.try_off_settings
                )
        result["warm_speedup"] = round(best["before"]["warm"][0] / best["now"]["warm"][0], 2)
        result["cold_speedup"] = round(best["before"]["cold"][0] / best["now"]["cold"][0], 2)
        return result
    finally:
        for ctx in contexts.values():
            ctx.close()


def bench_steps(model: Path, data: Path, every: int, limit: int, grid: dict[str, tuple[int, ...]] = STEP_GRID) -> dict:
    """Quality and seconds per image of every (sampler, steps) in `grid`, at the served precision."""
    pipe = load_pipe(model, NOW.precision, NOW.compile)
    rows = []
    for scheduler, counts in grid.items():
        for steps in counts:
            settings = replace(RunSettings(), scheduler=scheduler, steps=steps)
            rows.append({"scheduler": scheduler, "steps": steps} | quality(pipe, settings, data, every, limit))
    return {"bench": "steps", "model": str(model), "dtype": str(pipe.transformer.dtype), "rows": rows}


def steps_table(result: dict) -> str:
    """The `steps` bench as a markdown table (one row per sampler setting)."""
    head = "| scheduler | steps | s/image | " + " | ".join(
        f"{fam} {m}" for fam in FAMILIES for m in ("psnr_mask", "ssim_mask", "pattern")
    )
    lines = [head + " |", "|" + "---|" * (3 + 3 * len(FAMILIES))]
    for row in result["rows"]:
        cells = [row["scheduler"], row["steps"], row["s_per_image"]]
        cells += [row.get(fam, {}).get(m, "") for fam in FAMILIES for m in ("psnr_mask", "ssim_mask", "pattern")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def add_arguments(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], dict]]:
    """The `request` and `steps` subcommands; returns how to run each from parsed arguments."""
    request = sub.add_parser("request", help="warm and cold try-ons through the app's code: before against now")
    request.add_argument("--repeats", type=int, default=3)
    steps = sub.add_parser("steps", help="quality per second of every sampler and step count on the test split")
    for parser in (request, steps):
        parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="checkpoint (default: shipped)")
        parser.add_argument("--data", type=Path, default=Path("data/synth"), help="dataset with a test split")
        parser.add_argument("--every", type=int, default=8, help="every k-th test sample (one view per group)")
        parser.add_argument("--limit", type=int, default=12, help="test samples scored")
        parser.add_argument("--json", action="store_true", help="print one JSON line")
    request.add_argument("--no-quality", action="store_true", help="time only (no test split needed)")
    return {
        "request": lambda a: bench_request(a.model, a.repeats, None if a.no_quality else a.data, a.every, a.limit),
        "steps": lambda a: bench_steps(a.model, a.data, a.every, a.limit),
    }
