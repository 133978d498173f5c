"""Launch OMFA Studio (also the entry point of a Hugging Face Space).

    python app.py [--model DIR] [--host 0.0.0.0] [--port 7860] [--precision auto] [--compile auto]

The model is the shipped checkpoint (assets/omfa-tiny) unless --model or
$OMFA_MODEL names another folder written by `save_pretrained`. It runs on CUDA
when present, else on the CPU; nothing is downloaded. The weights are bf16
where the hardware runs bf16 natively, and the denoiser is compiled in the
background while the first requests run eagerly (`omfa.acceleration`;
--precision / $OMFA_PRECISION, --compile / $OMFA_COMPILE). On a ZeroGPU Space
the runs are wrapped in `spaces.GPU` (only when the `spaces` package is
installed) and nothing is compiled.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("SPACE_ID"):
    # On a Space every request comes through Hugging Face's proxies, on private addresses, which append the
    # client's address to X-Forwarded-For. Trusting them lets uvicorn take the last address that is not a
    # proxy's as the client's (the per-client limits of omfa.app.hosting); one a client sent itself is ignored.
    os.environ.setdefault("FORWARDED_ALLOW_IPS", "127.0.0.1,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16")

try:  # must come before torch initialises CUDA on a ZeroGPU Space
    import spaces
except ImportError:
    spaces = None

import gradio as gr  # noqa: E402

from omfa.acceleration import COMPILE_MODES, PRECISIONS  # noqa: E402


def gpu_decorator() -> Callable[[Callable], Callable] | None:
    """`spaces.GPU` when the `spaces` package is installed (Hugging Face Spaces), else None."""
    return spaces.GPU if spaces is not None else None


def build(
    model: str | os.PathLike | None = None, precision: str | None = None, compile_mode: str | None = None
) -> gr.Blocks:
    """Load the pipeline and build the queued app (not launched), with the hosting limits of the environment
    (`omfa.app.hosting.HostingLimits.from_env`).

    precision, compile_mode: `omfa.acceleration`'s settings (default: $OMFA_PRECISION and $OMFA_COMPILE, else "auto").
    """
    from omfa.acceleration import compile_enabled
    from omfa.app import gradio_queue
    from omfa.app.blocks import create_demo
    from omfa.app.hosting import HostingLimits
    from omfa.pipeline import DEFAULT_MODEL_DIR, OMFAPipeline
    from omfa.studio.card import ModelCard
    from omfa.studio.context import StudioContext
    from omfa.studio.settings import RunSettings

    path = Path(model or os.environ.get("OMFA_MODEL") or DEFAULT_MODEL_DIR)
    pipe = OMFAPipeline.load(path, precision=precision or os.environ.get("OMFA_PRECISION", "auto"))
    if compile_enabled(compile_mode or os.environ.get("OMFA_COMPILE", "auto"), pipe.device) and spaces is None:
        # every task, and a pose gallery's full batch of views, in the background
        pipe.compile(guidance_scale=RunSettings.guidance, view_batch=RunSettings.view_batch)
    # The card says what the model was trained on: the runs' notices compare each upload with it.
    context = StudioContext(pipe, gpu=gpu_decorator(), card=ModelCard.read(path))
    context.warm_up()
    demo = create_demo(pipe, context=context)
    limits = HostingLimits.from_env()
    # One run at a time on a CPU (a second would only halve the speed of both); two on a GPU. The sizes of
    # the queues and what one client may hold in them are the guarded queue's; direct /run/ calls, which
    # skip the queue, only when the host opens them.
    demo.queue(default_concurrency_limit=2 if pipe.device.type == "cuda" else 1, api_open=limits.open_api)
    gradio_queue.install(demo, limits)
    return demo


def launch_kwargs() -> dict:
    """Upload limit, the one folder of local files the app may serve (its examples), the hosting guard
    (body sizes, upload quotas, no fetching of URLs on a user's behalf, run ownership, the routes a
    public app does not serve), short answers to malformed requests, an offline theme and the app's
    few style rules."""
    from fastapi.exceptions import RequestValidationError
    from starlette.middleware import Middleware

    from omfa.app.blocks import CSS, theme
    from omfa.app.hosting import HostingGuard, HostingLimits, invalid_request
    from omfa.studio.context import EXAMPLES_DIR

    limits = HostingLimits.from_env()

    return {
        "max_file_size": limits.max_upload_bytes,
        "allowed_paths": [str(EXAMPLES_DIR)],
        "theme": theme(),
        "css": CSS,
        "app_kwargs": {
            "middleware": [Middleware(HostingGuard, limits=limits)],
            "exception_handlers": {RequestValidationError: invalid_request},
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OMFA Studio: virtual try-on, try-off and any pose.")
    parser.add_argument("--model", default=None, help="checkpoint folder (default: $OMFA_MODEL or assets/omfa-tiny)")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, or $GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860, or $GRADIO_SERVER_PORT)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=None, help="weights' dtype (default $OMFA_PRECISION or auto)"
    )
    parser.add_argument(
        "--compile", choices=COMPILE_MODES, default=None, help="compile the denoiser (default $OMFA_COMPILE or auto)"
    )
    args = parser.parse_args(argv)
    try:
        demo = build(args.model, args.precision, args.compile)
        settings = launch_kwargs()
    except ValueError as error:  # a missing or broken checkpoint, a bad hosting setting: say which and how
        print(f"app.py: {error}", file=sys.stderr)
        return 2
    demo.launch(server_name=args.host, server_port=args.port, **settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
