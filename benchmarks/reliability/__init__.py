"""Reliability and security of the served app, measured from outside like a public user would meet it.

`omfa bench reliability` serves `app.py` on 127.0.0.1 in a child process
(the shipped checkpoint, else a tiny seeded one) and runs, through its API:

- `uploads`: more than 200 hostile uploads (`cases`) into every upload widget,
  and the eight EXIF orientations;
- `limits`: upload size, served files, user input as paths or URLs, weights;
- `hosting`: what one hostile client can do to a public host: its share of
  the queue, body sizes and upload quotas, URLs in any spelling of the file
  routes, the memory of a maximal run, run ownership and closed routes, log lines;
- `load`: 50 concurrent jobs, a full queue, stopped runs, a 300-request soak.

It prints a table (cases tried, passed, failures, p95 latency, figures such
as RSS growth) or, with `--json`, one JSON object; the exit status is 1 when
any case fails. `--quick` runs the subset the test suite runs. It needs a
source checkout (it serves `app.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

QUICK = {"quick": True, "jobs": 10, "clients": 5, "soak": 30, "cancel_cycles": 2, "gallery_steps": 10}
FULL = {"quick": False, "jobs": 50, "clients": 25, "soak": 300, "cancel_cycles": 3, "gallery_steps": 100}


def run_reliability(
    model: Path | None = None,
    *,
    quick: bool = False,
    jobs: int | None = None,
    soak: int | None = None,
    steps: int = 2,
    workdir: Path | None = None,
) -> tuple[dict, list]:
    """Serve the app and run every check: (header facts, list of CheckResult).

    Args:
        model: checkpoint folder; default the shipped one, else a tiny seeded model.
        quick: the fast subset (about 35 hostile uploads, 10 concurrent jobs, 30 soak requests).
        jobs, soak: override the number of concurrent jobs and of soak requests.
        steps: denoising steps of the load and soak requests (hostile uploads use 1).
        workdir: where the server's files go (default: a temporary folder, removed afterwards).
    """
    import gradio

    from benchmarks.reliability.cases import upload_cases
    from benchmarks.reliability.hosting import hosting_checks
    from benchmarks.reliability.limits import check_limits
    from benchmarks.reliability.load import check_cancel, check_load, check_queue_full, check_soak
    from benchmarks.reliability.server import ServedApp, served_checkpoint
    from benchmarks.reliability.uploads import check_exif, check_uploads

    plan = {**(QUICK if quick else FULL), **({"jobs": jobs} if jobs else {}), **({"soak": soak} if soak else {})}
    if workdir is None:  # the uploads, the server's cache and a model fill a few hundred MB: remove them after
        with tempfile.TemporaryDirectory(prefix="omfa-reliability-") as folder:
            return run_reliability(model, quick=quick, jobs=jobs, soak=soak, steps=steps, workdir=Path(folder))
    work = Path(workdir)
    started = time.perf_counter()
    model, described = (Path(model), str(model)) if model else served_checkpoint(work / "model")
    cases = upload_cases(quick=plan["quick"])
    with ServedApp(model, work / "server") as app:
        header: dict[str, Any] = {
            "model": described,
            "steps (load, soak)": steps,
            "server start s": round(time.perf_counter() - started, 1),
            "server RSS after start MB": round(app.rss_mb()),
            "hosting settings changed": ", ".join(f"{k}={v}" for k, v in app.hosting.items()),
            "gradio": gradio.__version__,
            "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {platform.python_version()}",
        }
        results = [
            check_uploads(app, cases, work / "cases"),
            check_exif(app, work / "exif"),
            check_limits(app, work / "limits"),
            *hosting_checks(app, gallery_steps=plan["gallery_steps"]),
            check_load(app, jobs=plan["jobs"], clients=plan["clients"], steps=steps),
            check_queue_full(app),
            check_cancel(app, cycles=plan["cancel_cycles"]),
            check_soak(app, work / "soak", requests=plan["soak"], steps=steps),
        ]
    header["total s"] = round(time.perf_counter() - started)
    return header, results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `omfa bench reliability`."""
    parser.add_argument("--model", type=Path, default=None, help="checkpoint folder (default: shipped, else tiny)")
    parser.add_argument("--quick", action="store_true", help="the fast subset the test suite runs")
    parser.add_argument("--jobs", type=int, default=None, help="concurrent jobs (default 50; quick 10)")
    parser.add_argument("--soak", type=int, default=None, help="soak requests in a row (default 300; quick 30)")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps of load and soak requests")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run_cli(args: argparse.Namespace) -> int:
    """Run from parsed options; print the table or JSON; 0 when every case passed, else 1."""
    from benchmarks.reliability.report import format_table

    header, results = run_reliability(args.model, quick=args.quick, jobs=args.jobs, soak=args.soak, steps=args.steps)
    ok = all(r.ok for r in results)
    if args.json:
        print(json.dumps({"ok": ok, **header, "checks": [r.as_dict() for r in results]}))
    else:
        print(format_table(results, header))
    return 0 if ok else 1
