"""A pose gallery of several views against one view (`omfa bench gallery`), batched against sequential.

The speed target: a 4-view gallery takes at most 2.5x one view. Every run
goes through the studio's own code (`stream_gallery`: pose maps rendered, the
condition cache built anew, every step's frame), at the app's precision
(`--precision auto`), compile mode (the warm-up finished before timing, for
one view and for a full batch of views) and `RunSettings()`'s sampler. Three
configurations alternate so that drift on a shared machine hits all alike:
one view; the views one after another (`view_batch=1`); the views as one
batch (`view_batch=views`). Read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from omfa.acceleration import COMPILE_MODES, compile_enabled
from omfa.pipeline import DEFAULT_MODEL_DIR, OMFAPipeline
from omfa.studio.context import EXAMPLES_DIR, StudioContext
from omfa.studio.runs import GALLERY_TURNS, stream_gallery
from omfa.studio.settings import RunSettings

PRESET = "a_pose"


def _gallery(ctx: StudioContext, turns: tuple[int, ...], settings: RunSettings) -> tuple[float, list[np.ndarray]]:
    """One gallery through the studio's code: (seconds, the final view images)."""
    ctx.pipe.condition_cache.clear()  # every run pays for its reference's keys
    start = time.perf_counter()
    for frame in stream_gallery(ctx, str(EXAMPLES_DIR / "portrait.png"), [PRESET], turns, settings):
        last = frame
    return time.perf_counter() - start, [image for image, _ in last.gallery]


def bench_gallery(model: Path, views: int, repeats: int, threads: int | None, compile_mode: str = "auto") -> dict:
    """Seconds of one view and of `views` views, sequential and batched (best of `repeats`)."""
    if threads is not None:
        torch.set_num_threads(threads)
    pipe = OMFAPipeline.load(model, device="cpu", precision="auto")
    compiled = compile_enabled(compile_mode, pipe.device)
    if compiled:
        pipe.compile(["multiview"], RunSettings.guidance, background=False, view_batch=views)
    turns = GALLERY_TURNS[:views]
    configs = {
        "one_view": ((0,), RunSettings(view_batch=1)),
        "sequential": (turns, RunSettings(view_batch=1)),
        "batched": (turns, RunSettings(view_batch=views)),
    }
    ctx = StudioContext(pipe)
    try:
        ctx.portrait(str(EXAMPLES_DIR / "portrait.png"))  # prepared once: the matting is no part of the timing
        for turns_, settings in configs.values():  # warm-up: allocator, kernels
            _gallery(ctx, turns_, replace(settings, steps=2))
        runs: dict[str, list[tuple[float, list[np.ndarray]]]] = {name: [] for name in configs}
        for _ in range(repeats):
            for name, (turns_, settings) in configs.items():
                runs[name].append(_gallery(ctx, turns_, settings))
    finally:
        ctx.close()
    best = {name: min(r, key=lambda run: run[0]) for name, r in runs.items()}
    one = best["one_view"][0]
    # batched views agree with sequential ones up to bf16 rounding of a batched matmul
    diff = max(
        int(np.abs(a.astype(int) - b.astype(int)).max())
        for a, b in zip(best["batched"][1], best["sequential"][1], strict=True)
    )
    return {
        "bench": "gallery",
        "model": str(model),
        "dtype": str(pipe.transformer.dtype),
        "compiled": compiled,
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(RunSettings()).items() if k != "view_batch"},
        "views": views,
        "repeats": repeats,
        "one_view_s": round(one, 3),
        "sequential_s": round(best["sequential"][0], 3),
        "batched_s": round(best["batched"][0], 3),
        "sequential_ratio": round(best["sequential"][0] / one, 3),
        "batched_ratio": round(best["batched"][0] / one, 3),
        "batched_speedup": round(best["sequential"][0] / best["batched"][0], 3),
        "target_ratio": 2.5,
        "max_abs_diff_uint8": diff,
    }


def add_arguments(sub: argparse._SubParsersAction) -> dict:
    """The `gallery` subcommand; returns how to run it from parsed arguments."""
    gallery = sub.add_parser("gallery", help="a pose gallery of N views against one view, batched vs sequential")
    gallery.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="checkpoint (default: shipped)")
    gallery.add_argument("--views", type=int, default=4)
    gallery.add_argument("--repeats", type=int, default=3)
    gallery.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    gallery.add_argument("--compile", choices=COMPILE_MODES, default="auto", help="the app's --compile (default auto)")
    gallery.add_argument("--json", action="store_true", help="print one JSON line")
    return {"gallery": lambda a: bench_gallery(a.model, a.views, a.repeats, a.threads, a.compile)}
