"""Hostile uploads and EXIF orientations, sent through every upload widget of the running app.

Each upload must get a clear error (the app's own sentence, no traceback, no
server path) or a correct result, in under `LIMIT_S` seconds, and the server
must stay up with bounded memory. A photo stored rotated with any of the
eight EXIF orientations must reach the model upright: the portrait the app
shows back ("as the model sees it") must be the one of the upright photo.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gradio_client import handle_file
from PIL import Image

from benchmarks.reliability.cases import Case, hostile
from benchmarks.reliability.report import CheckResult
from benchmarks.reliability.server import EXAMPLES, Outcome, ServedApp, call, fetch_image, unclear
from omfa.app.files import FIGURE_HW

LIMIT_S = 2.0  # seconds from submit to the answer, upload included
# The loader decodes at most 16 MP (64 MB as RGBA) per upload; twice that for conversions, plus the models' work.
MAX_PEAK_GROWTH_MB = 400.0
DONE = re.compile(r"done in \d+\.\d s$")
# gradio_client refuses a file over the app's max_file_size before sending it, naming the user's own file.
CLIENT_SIZE_REFUSAL = "exceeds the maximum file size"
STEPS = 1  # denoising steps per hostile request: the upload is under test, not the sampler


def target_call(target: str, file: dict[str, Any], steps: int = STEPS, seed: int = 0) -> tuple[str, tuple]:
    """(endpoint, arguments) that put `file` into the upload widget `target`; the other inputs are examples."""
    portrait, top = handle_file(str(EXAMPLES / "portrait.png")), handle_file(str(EXAMPLES / "top.png"))
    run = (steps, 2.0, seed, "ddim")
    return {
        "try_on.portrait": ("/try_on", (file, top, "upper", "preset", "a_pose", 0, *run)),
        "try_on.garment": ("/try_on", (portrait, file, "upper", "preset", "a_pose", 0, *run)),
        "try_off.dressed": ("/try_off", (file, "upper", *run)),
        "outfit.bottom": ("/outfit", (portrait, top, file, "preset", "a_pose", 0, *run)),
        "pose_gallery.portrait": ("/pose_gallery", (file, ["a_pose"], [0], *run)),
        "pose_from_photo.photo": ("/pose_from_photo", (file, "left_shoulder")),
    }[target]


def result_problem(api_name: str, outputs: Sequence[Any], result_hw: tuple[int, int]) -> str | None:
    """Why the last outputs of a finished request are not a correct result, or None when they are.

    `result_hw` is the size of a run's result (`ServedApp.result_hw`); the Pose Studio's figure
    has its own, `FIGURE_HW`.
    """
    expected_hw = result_hw
    if api_name == "/pose_from_photo":
        expected_hw = FIGURE_HW
        figure, info = outputs[0], outputs[-2]  # then the preset box, emptied
        if figure is None or "from a photo" not in str(info).lower():
            return f"pose from a photo gave no figure or an odd description ({str(info)[:80]!r})"
        image = fetch_image(figure)
    else:
        # The gallery and its zip come last there.
        status = str(outputs[4] if api_name == "/pose_gallery" else outputs[-1])
        if not DONE.search(status):
            return f"the run ended with the status {status[:80]!r}, not 'done'"
        main = outputs[5][0]["image"] if api_name == "/pose_gallery" and outputs[5] else outputs[0]
        if main is None:
            return "the run finished without its image"
        image = fetch_image(main)
    if image.shape[:2] != tuple(expected_hw):
        return f"the result is {image.shape[1]}x{image.shape[0]} px, not {expected_hw[1]}x{expected_hw[0]}"
    return None


# The Pose Studio refuses a photo by keeping its pose and saying why in its description.
POSE_REFUSAL = "Could not copy a pose: "


def refusal(api_name: str, outcome: Outcome) -> Outcome:
    """The outcome as a refusal with its message when the Pose Studio answered a photo with one."""
    if api_name == "/pose_from_photo" and outcome.ok and POSE_REFUSAL in str(outcome.outputs[-2]):
        return Outcome(False, outcome.seconds, str(outcome.outputs[-2]).split(POSE_REFUSAL, 1)[1], outcome.outputs)
    return outcome


def judge(
    case: Case, api_name: str, outcome: Outcome, result_hw: tuple[int, int], limit_s: float = LIMIT_S
) -> str | None:
    """Why the app's answer to a hostile upload fails the suite, or None when it passes."""
    outcome = refusal(api_name, outcome)
    if outcome.seconds > limit_s:
        return f"answered in {outcome.seconds:.2f} s (limit {limit_s:g} s)"
    if not outcome.ok:
        if CLIENT_SIZE_REFUSAL in outcome.message:
            # refused before the upload (the server's own refusal is checked in benchmarks.reliability.limits)
            return None
        why = unclear(outcome.message)
        return None if why is None else f"unclear error ({why}): {outcome.message[:160]!r}"
    if case.expect == "error":
        return "accepted, but an error was expected"
    return result_problem(api_name, outcome.outputs, result_hw)


def write_case(case: Case, index: int, folder: Path) -> Path:
    """The upload as a file on disk under its own (possibly odd) name, in a folder of its own."""
    path = folder / f"{index:03d}" / case.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(case.data)
    return path


def check_uploads(app: ServedApp, cases: Sequence[Case], folder: Path, limit_s: float = LIMIT_S) -> CheckResult:
    """Send every case through its upload widget; the server must answer each within `limit_s` and survive
    it with bounded memory."""
    result = CheckResult("hostile uploads")
    client = app.client()
    paths = [write_case(case, i, folder) for i, case in enumerate(cases)]
    rss_start = app.rss_mb()
    peak_reset = app.reset_peak()
    for case, path in zip(cases, paths):
        api_name, args = target_call(case.target, handle_file(str(path)))
        outcome = call(client, api_name, *args)
        problem = judge(case, api_name, outcome, app.result_hw, limit_s)
        if not app.responds():
            result.record(f"{case.name} -> {case.target}", "the server died")
            break
        result.record(f"{case.name} -> {case.target}", problem, outcome.seconds)
    peak_growth = app.peak_rss_mb() - rss_start
    result.record("the server still answers", None if app.responds() else "it does not")
    result.record(
        f"peak memory grows less than {MAX_PEAK_GROWTH_MB:g} MB",
        None if peak_growth < MAX_PEAK_GROWTH_MB else f"peak grew {peak_growth:.0f} MB",
    )
    result.figures = {
        "targets": len({c.target for c in cases}),
        "slowest s": max(result.latencies_s, default=0.0),
        "RSS start MB": rss_start,
        "RSS end MB": app.rss_mb(),
        "peak growth MB": peak_growth,
    }
    if not peak_reset:
        result.figures["peak"] = "since start (VmHWM reset refused)"
    return result


def _exif_file(image: np.ndarray, fmt: str, orientation: int) -> bytes:
    """`image` stored as a camera stores it for `orientation` (0: stored rotated as for 6, tag left out)."""
    h = hostile()
    stored = h.stored_for_orientation(image, orientation or 6)
    if orientation == 0:
        return h.encode(stored, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return h.encode(stored, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def check_exif(
    app: ServedApp, folder: Path, formats: Sequence[str] = ("PNG", "JPEG"), tolerance: dict[str, float] | None = None
) -> CheckResult:
    """Orientations 1-8 in each of `formats` must reach the model upright.

    The portrait the app shows back for orientation k must match the one for
    orientation 1 (mean absolute difference per channel within `tolerance`:
    PNG is lossless, a rotated JPEG is re-compressed). A control, the rotated
    pixels without their tag, must not match: it shows the check can fail.
    """
    tolerance = tolerance or {"PNG": 0.5, "JPEG": 6.0}
    result = CheckResult("EXIF orientations")
    client = app.client()
    upright = np.asarray(Image.open(EXAMPLES / "portrait.png").convert("RGB"))
    worst: dict[str, float] = {}
    for fmt in formats:
        seen: dict[int, np.ndarray | None] = {}
        for orientation in (1, 2, 3, 4, 5, 6, 7, 8, 0):
            path = folder / f"exif{orientation}.{fmt.lower()}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_exif_file(upright, fmt, orientation))
            api_name, args = target_call("try_on.portrait", handle_file(str(path)))
            outcome = call(client, api_name, *args)
            seen[orientation] = fetch_image(outcome.outputs[1]) if outcome.ok and outcome.outputs[1] else None
            name = f"{fmt} orientation {orientation}" if orientation else f"{fmt} rotated, tag removed (control)"
            if seen[orientation] is None:
                result.record(
                    name,
                    None if orientation == 0 else f"no portrait came back: {outcome.message[:120]}",
                    outcome.seconds,
                )
                continue
            if orientation == 1 or seen[1] is None:
                result.record(name, None if orientation == 1 else "orientation 1 failed", outcome.seconds)
                continue
            diff = float(np.abs(seen[orientation].astype(float) - seen[1]).mean())
            if orientation == 0:
                problem = None if diff > 3 * tolerance[fmt] else f"matches upright (difference {diff:.2f})"
            else:
                worst[fmt] = max(worst.get(fmt, 0.0), diff)
                problem = None if diff <= tolerance[fmt] else f"not upright (difference {diff:.2f} > {tolerance[fmt]})"
            result.record(name, problem, outcome.seconds)
    result.figures = {f"max diff {fmt}": round(value, 2) for fmt, value in worst.items()}
    return result
