"""Many users at once, a full queue, stopped runs and a long soak, against the running app.

- Load: `jobs` concurrent `gradio_client` jobs from `clients` users (sessions and addresses) over
  five distinct requests (endpoints, inputs, seeds); every job must finish
  with exactly the image that the same request gave when run alone.
- Queue: with the worker busy, `queue_size` waiting events from many clients
  fill the sampling queue and the next one is refused with HTTP 503 and a
  message, while a Pose Studio edit, in its own queue, still runs.
- Cancellation: a long run stopped mid-way frees the worker within one
  denoising step (the next job starts no later than one step plus the usual
  pick-up time), the next job succeeds, and afterwards the server idles:
  no sampler keeps running, threads and memory come back.
- Soak: `requests` requests in a row over every endpoint, a fifth of them with
  never-seen uploads; the server's RSS must grow less than `MAX_GROWTH_MB`.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image

from benchmarks.reliability.report import CheckResult
from benchmarks.reliability.server import EXAMPLES, Outcome, ServedApp, call, fetch_image, unclear
from benchmarks.reliability.uploads import DONE, result_problem

MAX_GROWTH_MB = 200.0
LONG_STEPS = 100  # the app's largest step count: a run that is still going when it is stopped
STEP = re.compile(r"step (\d+)/")
SLACK_S = 0.25  # timing noise allowed on top of pick-up + one step (a run left going would take LONG_STEPS steps)

# (endpoint, inputs before the sampler settings, seed, indices of the output images compared)
REQUESTS: tuple[tuple[str, tuple, int, tuple[int, ...]], ...] = (
    ("/try_on", ("portrait.png", "top.png", "upper", "preset", "walking", 0), 1, (0,)),
    ("/try_on", ("portrait_2.png", "bottom.png", "lower", "preset", "a_pose", 0), 2, (0,)),
    ("/try_off", ("dressed.png", "both"), 3, (0, 1)),
    ("/outfit", ("portrait_2.png", "top.png", "bottom.png", "preset", "runway_stride", 0), 4, (0,)),
    ("/try_on", ("portrait.png", "top.png", "upper", "preset", "walking", 0), 5, (0,)),  # as the first, other seed
)


def _client(app: ServedApp) -> Client:
    """A new simulated user: its own session and its own IP address."""
    return app.client()


def _args(inputs: tuple, steps: int, seed: int) -> tuple:
    """Example file names as uploads, then the sampler settings."""
    files = tuple(handle_file(str(EXAMPLES / v)) if isinstance(v, str) and v.endswith(".png") else v for v in inputs)
    return (*files, steps, 2.0, seed, "ddim")


def _images(outcome: Outcome, indices: tuple[int, ...]) -> list[np.ndarray]:
    return [fetch_image(outcome.outputs[i]) for i in indices]


def check_load(app: ServedApp, jobs: int = 50, clients: int = 25, steps: int = 2) -> CheckResult:
    """`jobs` concurrent jobs must all finish, each with the image its request gives when run alone."""
    result = CheckResult(f"load: {jobs} concurrent jobs")
    solo = _client(app)
    references = []
    for api_name, inputs, seed, indices in REQUESTS:
        outcome = call(solo, api_name, *_args(inputs, steps, seed))
        if not outcome.ok:
            result.record(f"reference {api_name} seed {seed}", f"failed: {outcome.message[:120]}")
            return result
        references.append(_images(outcome, indices))
    firsts = [refs[0].astype(int) for refs in references]
    alike = [(i, j) for i in range(len(firsts)) for j in range(i) if np.abs(firsts[i] - firsts[j]).mean() < 1.0]
    result.record("the five requests give five different images", f"requests {alike} look alike" if alike else None)
    sessions = [_client(app) for _ in range(clients)]

    def job(k: int) -> tuple[int, Outcome]:
        api_name, inputs, seed, _ = REQUESTS[k % len(REQUESTS)]
        return k, call(sessions[k % clients], api_name, *_args(inputs, steps, seed))

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        finished = list(pool.map(job, range(jobs)))
    exact = 0
    for k, outcome in finished:
        api_name, _, seed, indices = REQUESTS[k % len(REQUESTS)]
        problem = None if outcome.ok else f"lost: {outcome.message[:120]}"
        if problem is None and not DONE.search(str(outcome.outputs[-1])):
            problem = f"ended with {str(outcome.outputs[-1])[:60]!r}"
        if problem is None:
            pairs = zip(_images(outcome, indices), references[k % len(REQUESTS)])
            diffs = [float(np.abs(a.astype(int) - b).max()) for a, b in pairs]
            exact += max(diffs) == 0.0
            problem = None if max(diffs) == 0.0 else f"differs from its request's image run alone (max {max(diffs):g})"
        result.record(f"job {k} ({api_name} seed {seed})", problem, outcome.seconds)
    result.figures = {
        "completed": f"{sum(o.ok for _, o in finished)}/{jobs}",
        "identical to solo run": exact,
        "sessions": clients,
        "steps": steps,
        "server up": app.responds(),
    }
    return result


def check_queue_full(app: ServedApp) -> CheckResult:
    """With the worker busy, `queue_size` events from many clients fill the sampling queue; the next is
    refused with a message, while a Pose Studio edit (its own queue) still runs; all drain."""
    size, places = app.limits.queue_size, app.limits.places_per_client
    result = CheckResult("full queue")
    holder_client, spare, editor = _client(app), _client(app), _client(app)
    holder = holder_client.submit(
        *_args(("portrait.png", ["a_pose", "walking", "t_pose"], [0, 90, 180, -90]), LONG_STEPS, 0),
        api_name="/pose_gallery",
    )
    while not any("step" in str(out[4]) for out in holder.outputs()) and not holder.done():  # the status
        time.sleep(0.05)
    uploaded = app.upload((EXAMPLES / "dressed.png").read_bytes(), "dressed.png").json()[0]
    fn_index = app.fn_index("/try_off")
    # (session, address, event id) of each waiting event; one client holds `places` of them at most
    waiting: list[tuple[str, str, str | None]] = []
    for i in range(size):
        if i % places == 0:
            session, address = f"queue-fill-{i // places}", app.new_address()
        joined = app.join(
            "/try_off",
            [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, "upper", 1, 2.0, i, "ddim"],
            session,
            address,
        )
        waiting.append((session, address, joined.json().get("event_id") if joined.status_code == 200 else None))
    refused_early = sum(event_id is None for *_, event_id in waiting)
    result.record(
        f"{size} waiting events from {-(-size // places)} clients are accepted",
        f"{refused_early} of {size} refused early" if refused_early else None,
    )
    start = time.perf_counter()
    overflow = app.join(
        "/try_off", [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, "upper", 1, 2.0, 0, "ddim"]
    )
    seconds = time.perf_counter() - start
    detail = overflow.json().get("detail", "") if overflow.status_code == 503 else ""
    result.record(
        "the next event is refused with 503 and a message",
        None if "Queue is full" in detail else f"HTTP {overflow.status_code}: {overflow.text[:100]}",
        seconds,
    )
    refused = call(spare, "/try_off", *_args(("dressed.png", "upper"), 1, 0))
    result.record(
        "gradio_client sees the refusal",
        None if "Queue is full" in refused.message else f"ok={refused.ok}: {refused.message[:100]}",
        refused.seconds,
    )
    edit = call(editor, "/pose_preset", "walking", "left_elbow")
    result.record(
        "a Pose Studio edit still runs while the sampling queue is full",
        None if edit.ok and edit.outputs[0] else f"refused: {edit.message[:100]}",
        edit.seconds,
    )
    for session, address, event_id in waiting:
        if event_id:
            app.cancel(session, fn_index, event_id, address)
    holder.cancel()
    after = call(spare, "/try_off", *_args(("dressed.png", "upper"), 1, 0))
    result.record(
        "after cancelling them all, a new job succeeds",
        None if after.ok and DONE.search(after.message) else after.message[:120],
        after.seconds,
    )
    result.figures = {"max_size": size, "places per client": places, "refusal": detail[:60]}
    return result


def _first_frame(client: Client, api_name: str, args: tuple) -> tuple[Any, float]:
    """Submit a job and wait for its first streamed frame: (job, seconds to that frame)."""
    start = time.perf_counter()
    job = client.submit(*args, api_name=api_name)
    while not job.outputs() and not job.done():
        time.sleep(0.005)
    return job, time.perf_counter() - start


def check_cancel(app: ServedApp, cycles: int = 3) -> CheckResult:
    """Stop a long run mid-way: the next job starts within one step; afterwards nothing keeps running."""
    result = CheckResult("cancellation")
    long_client, next_client = _client(app), _client(app)
    short = ("/try_on", _args(("portrait.png", "top.png", "upper", "preset", "a_pose", 0), 2, 0))
    pickups = []
    for _ in range(3):  # the pick-up time of a job on an idle server
        job, seconds = _first_frame(next_client, *short)
        job.result()
        pickups.append(seconds)
    pickup = statistics.median(pickups)
    threads_before, rss_before = app.threads(), app.rss_mb()
    freed: list[float] = []
    for cycle in range(cycles):
        job = long_client.submit(
            *_args(("portrait.png", "top.png", "upper", "preset", "a_pose", 0), LONG_STEPS, cycle), api_name="/try_on"
        )
        arrivals: dict[str, float] = {}
        while len(arrivals) < 6 and not job.done():
            for out in job.outputs():
                if "step" in str(out[-1]):
                    arrivals.setdefault(str(out[-1]), time.perf_counter())
            time.sleep(0.002)
        if len(arrivals) < 3:
            job.cancel()
            result.record(f"stop {cycle + 1}", "the long run streamed fewer than 3 steps: nothing to stop")
            continue
        step_s = statistics.median(np.diff(sorted(arrivals.values())))
        start = time.perf_counter()
        job.cancel()
        nxt, _ = _first_frame(next_client, *short)
        freed.append(time.perf_counter() - start)
        outcome = nxt.result()
        steps_seen = max(
            (int(STEP.search(str(o[-1])).group(1)) for o in job.outputs() if STEP.search(str(o[-1]))), default=0
        )
        problem = None
        if freed[-1] > pickup + step_s + SLACK_S:
            problem = (
                f"the next job started {freed[-1]:.3f} s after Stop (pick-up {pickup:.3f} s, one step {step_s:.3f} s)"
            )
        elif steps_seen >= LONG_STEPS:
            problem = "the stopped run went on to its last step"
        elif not DONE.search(str(outcome[-1])):
            problem = f"the next job ended with {str(outcome[-1])[:60]!r}"
        result.record(f"stop {cycle + 1} at step {steps_seen}/{LONG_STEPS}", problem, freed[-1])
    time.sleep(1.0)
    cpu_start = app.cpu_s()
    time.sleep(2.0)
    idle_cpu = (app.cpu_s() - cpu_start) / 2.0
    result.record(
        "the server idles after the stops (no sampler left running)",
        None if idle_cpu < 0.3 else f"uses {idle_cpu:.0%} of a core while idle",
    )
    result.figures = {
        "one step ms": round(1000 * step_s) if freed else None,
        "pick-up ms": round(1000 * pickup),
        "freed ms (worst)": round(1000 * max(freed, default=0.0)),
        "idle CPU": f"{idle_cpu:.0%}",
        "threads": f"{threads_before} -> {app.threads()}",
        "RSS change MB": round(app.rss_mb() - rss_before, 1),
    }
    return result


def _variant(folder: Path, name: str, k: int) -> str:
    """An example image with a seeded 8x8 patch in a corner: new bytes, so the app prepares it afresh."""
    image = np.asarray(Image.open(EXAMPLES / name).convert("RGB")).copy()
    image[:8, :8] = np.random.default_rng(k).integers(0, 256, 3, dtype=np.uint8)
    path = folder / f"{Path(name).stem}_{k}.png"
    Image.fromarray(image).save(path)
    return str(path)


def _soak_requests(folder: Path, steps: int) -> list[Callable[[int], tuple[str, tuple, str]]]:
    """Request makers: index -> (endpoint, arguments, expected "result" or "error")."""
    file = lambda name: handle_file(str(EXAMPLES / name))  # noqa: E731
    run = lambda k: (steps, 2.0, k, "ddim")  # noqa: E731
    noise = folder / "noise.png"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    presets = ("a_pose", "walking", "t_pose", "waving", "squat")
    return [
        lambda k: (
            "/try_on",
            (file("portrait.png"), file("top.png"), "upper", "preset", "walking", 0, *run(k)),
            "result",
        ),
        lambda k: ("/try_off", (file("dressed.png"), "both", *run(k)), "result"),
        lambda k: (
            "/outfit",
            (file("portrait_2.png"), file("top.png"), file("bottom.png"), "preset", "a_pose", 0, *run(k)),
            "result",
        ),
        lambda k: ("/pose_gallery", (file("portrait.png"), ["a_pose", "walking"], [0], *run(k)), "result"),
        lambda k: ("/pose_preset", (presets[k % len(presets)], "left_elbow"), "result"),
        lambda k: (
            "/try_on",
            (
                handle_file(_variant(folder, "portrait.png", k)),
                file("top.png"),
                "upper",
                "preset",
                "a_pose",
                0,
                *run(k),
            ),
            "result",
        ),
        lambda k: ("/pose_yaw", ("left_elbow", (k * 15) % 360 - 180), "result"),
        lambda k: ("/pose_from_photo", (file("portrait_2.png"), "left_shoulder"), "result"),
        lambda k: (
            "/try_on",
            (
                file("portrait_2.png"),
                handle_file(_variant(folder, "top.png", k)),
                "upper",
                "portrait",
                "a_pose",
                45,
                *run(k),
            ),
            "result",
        ),
        lambda k: (
            "/try_on",
            (handle_file(str(noise)), file("top.png"), "upper", "preset", "a_pose", 0, *run(k)),
            "error",
        ),
    ]


def check_soak(app: ServedApp, folder: Path, requests: int = 300, steps: int = 2) -> CheckResult:
    """`requests` requests in a row; every one answered correctly, RSS growth under MAX_GROWTH_MB."""
    result = CheckResult(f"soak: {requests} requests")
    folder.mkdir(parents=True, exist_ok=True)
    client = _client(app)
    makers = _soak_requests(folder, steps)
    rss = [app.rss_mb()]
    for k in range(requests):
        api_name, args, expect = makers[k % len(makers)](k)
        outcome = call(client, api_name, *args)
        if expect == "error":
            problem = "accepted noise as a portrait" if outcome.ok else unclear(outcome.message)
        elif not outcome.ok:
            problem = f"failed: {outcome.message[:120]}"
        elif api_name.startswith("/pose_") and api_name != "/pose_gallery":
            problem = None if outcome.outputs[0] else "no figure came back"
        else:
            problem = result_problem(api_name, outcome.outputs, app.result_hw)
        result.record(f"request {k} {api_name}", problem, outcome.seconds)
        for path in folder.glob("*_*.png"):  # the variants are sent: keep the client's disk clean
            path.unlink()
        if (k + 1) % 10 == 0:
            rss.append(app.rss_mb())
    growth = rss[-1] - rss[0]
    result.record(
        f"RSS grows less than {MAX_GROWTH_MB:g} MB", None if growth < MAX_GROWTH_MB else f"grew {growth:.0f} MB"
    )
    result.figures = {
        "RSS start MB": rss[0],
        "RSS end MB": rss[-1],
        "RSS max MB": max(rss),
        "RSS growth MB": growth,
        "server up": app.responds(),
    }
    return result
