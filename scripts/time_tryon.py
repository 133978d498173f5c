"""Seconds to the first preview and to the final image of a try-on, through the served app.

    .venv/bin/python scripts/time_tryon.py [--model DIR] [--steps 20]

Launches the app on a free localhost port with the given checkpoint (default: the
shipped one), then runs the example try-on through gradio_client: once with the
example prepared at start-up, once with new uploads, twice warm with new seeds.
Prints one JSON line per run. Wall-clock seconds on a shared machine: noisy. The
client does not download the streamed images (each download costs the client
more CPU than the server spends on the step), so this times the server; the
denoiser runs eagerly (compiling would share the cores with the runs timed).
`omfa bench request` compares configurations side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from omfa.studio.settings import RunSettings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=RunSettings.steps)
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    import app

    demo = app.build(args.model, compile_mode="off")
    _, url, _ = demo.launch(server_port=None, prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
    client = Client(url, verbose=False, download_files=False)
    examples = ROOT / "assets" / "examples"

    def once(label: str, seed: int, portrait: str = "portrait.png", garment: str = "top.png") -> None:
        start, first = time.perf_counter(), None
        job = client.submit(
            handle_file(str(examples / portrait)),
            handle_file(str(examples / garment)),
            "upper",
            "preset",
            "walking",
            0,
            args.steps,
            2.0,
            seed,
            RunSettings.scheduler,
            api_name="/try_on",
        )
        for out in job:
            if first is None and "step 1/" in (out[-1] or ""):
                first = time.perf_counter() - start
        total = time.perf_counter() - start
        print(
            json.dumps(
                {"run": label, "steps": args.steps, "first_preview_s": round(first, 2), "final_s": round(total, 2)}
            )
        )

    try:
        once("example prepared at start-up", 0)
        once("new uploads (a dressed person: try-off, then try-on)", 0, "portrait_2.png", "dressed.png")
        once("warm, new seed", 1)
        once("warm, new seed", 2)
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
