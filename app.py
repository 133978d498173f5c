"""Launch OMFA Studio (also the entry point of a Hugging Face Space).

    python app.py [--model DIR] [--host 0.0.0.0] [--port 7860]

The model is the shipped checkpoint (assets/omfa-tiny) unless --model or
$OMFA_MODEL names another folder written by `save_pretrained`. It runs on CUDA
when present, else on the CPU; nothing is downloaded. On a ZeroGPU Space the
runs are wrapped in `spaces.GPU` (only when the `spaces` package is installed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:  # must come before torch initialises CUDA on a ZeroGPU Space
    import spaces
except ImportError:
    spaces = None

import gradio as gr  # noqa: E402

MAX_UPLOAD = "25mb"  # the preprocessing's own limit (omfa.imaging.loading)
QUEUE_SIZE = 64  # waiting runs (room for 50 users at once); more are turned away with "queue full"


def gpu_decorator() -> Callable[[Callable], Callable] | None:
    """`spaces.GPU` when the `spaces` package is installed (Hugging Face Spaces), else None."""
    return spaces.GPU if spaces is not None else None


def build(model: str | os.PathLike | None = None) -> gr.Blocks:
    """Load the pipeline and build the queued app (not launched)."""
    from omfa.app.blocks import create_demo
    from omfa.pipeline import DEFAULT_MODEL_DIR, OMFAPipeline
    from omfa.studio.card import ModelCard
    from omfa.studio.context import StudioContext

    path = Path(model or os.environ.get("OMFA_MODEL") or DEFAULT_MODEL_DIR)
    pipe = OMFAPipeline.load(path)
    # The card says what the model was trained on: the runs' notices compare each upload with it.
    context = StudioContext(pipe, gpu=gpu_decorator(), card=ModelCard.read(path))
    context.warm_up()
    demo = create_demo(pipe, context=context)
    # One run at a time on a CPU (a second would only halve the speed of both); two on a GPU.
    return demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=2 if pipe.device.type == "cuda" else 1)


def launch_kwargs() -> dict:
    """Upload limit, the one folder of local files the app may serve (its examples), no fetching of URLs
    on a user's behalf, an offline theme and the app's few style rules."""
    from starlette.middleware import Middleware

    from omfa.app.blocks import CSS, theme
    from omfa.app.uploads import RefuseRemoteFiles
    from omfa.studio.context import EXAMPLES_DIR

    return {
        "max_file_size": MAX_UPLOAD,
        "allowed_paths": [str(EXAMPLES_DIR)],
        "theme": theme(),
        "css": CSS,
        "app_kwargs": {"middleware": [Middleware(RefuseRemoteFiles)]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OMFA Studio: virtual try-on, try-off and any pose.")
    parser.add_argument("--model", default=None, help="checkpoint folder (default: $OMFA_MODEL or assets/omfa-tiny)")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, or $GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860, or $GRADIO_SERVER_PORT)")
    args = parser.parse_args(argv)
    try:
        demo = build(args.model)
    except ValueError as error:  # a missing or broken checkpoint: say which and how to get one
        print(f"app.py: {error}", file=sys.stderr)
        return 2
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
