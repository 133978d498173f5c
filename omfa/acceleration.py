"""Running the denoiser fast: bf16 where the hardware has it, and a compiled forward that never blocks a request.

bf16: CPUs with AMX or AVX512-BF16 and CUDA GPUs run bf16 matmuls and convs
natively; on the shipped checkpoint bf16 weights sample about 1.6x faster
than fp32 on such a CPU, with outputs about 50 dB PSNR from fp32's. Other
CPUs emulate bf16 and get slower, so `precision="auto"` keeps fp32 there.

Compile: `torch.compile` (inductor, with freezing: the weights become
constants and are prepacked for oneDNN) of `OMFATransformer.forward_cached`,
the one call every denoising step makes. Compiling costs tens of seconds on
a CPU (a few from inductor's on-disk cache, which persists across restarts),
so `ForwardCompiler` compiles in a background thread by running a short
warm-up of every task it is asked for; until it is done, and for any call
whose shapes it has not compiled (another task, guidance off), requests run
eagerly (`torch.compiler.set_stance("eager_on_recompile")`): a request never
waits for a compiler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("auto", "on", "off")


def bf16_supported(device: str | torch.device) -> bool:
    """Whether `device` runs bf16 natively (CUDA with bf16, or a CPU with AMX / AVX512-BF16)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_dtype(precision: str, device: str | torch.device) -> torch.dtype:
    """The weights' dtype for a precision setting: "auto" is bf16 where native, else fp32.

    An explicit "bf16" is honoured everywhere (the results are right, only slower where bf16 is
    emulated), with a warning saying so.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision is {precision!r}; choose one of {', '.join(PRECISIONS)}")
    native = bf16_supported(device)
    if precision == "fp32" or (precision == "auto" and not native):
        return torch.float32
    if not native:
        log.warning("bf16 is emulated on this %s (no AMX / AVX512-BF16): sampling will be slower than fp32", device)
    return torch.bfloat16


def compile_enabled(mode: str, device: str | torch.device) -> bool:
    """Whether to compile the denoiser: "auto" compiles on CUDA and on CPUs that have bf16 natively
    (where the measured gain is largest), "on" always, "off" never."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile is {mode!r}; choose one of {', '.join(COMPILE_MODES)}")
    return mode == "on" or (mode == "auto" and bf16_supported(device))


class ForwardCompiler:
    """A compiled stand-in for an eager forward, compiled in the background by `warm_up`.

    `__call__` runs the compiled code once the warm-up has finished (or in the
    warm-up's own thread), falling back to `eager` for shapes it was not
    compiled for; before that, and if compiling failed, it runs `eager`.
    """

    def __init__(self, eager: Callable[..., torch.Tensor]) -> None:
        self.eager = eager
        # freezing folds the weights into the graph: inference only, never trained afterwards
        self._compiled = torch.compile(eager, dynamic=False, options={"freezing": True})
        self._ready = threading.Event()
        self._warming_thread: int | None = None
        self.error: BaseException | None = None
        self.seconds: float | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def __call__(self, *args: Any) -> torch.Tensor:
        if threading.get_ident() == self._warming_thread:
            return self._compiled(*args)
        if not self.ready:
            return self.eager(*args)
        with torch.compiler.set_stance("eager_on_recompile"):  # unseen shapes: eager, never a compile
            return self._compiled(*args)

    def warm_up(self, run: Callable[[], None], background: bool = True) -> threading.Thread | None:
        """Compile by calling `run` (which must call this compiler for every shape to compile).

        In the background the work runs in a daemon thread, returned; a failure is logged and
        leaves the eager forward in place.
        """

        def work() -> None:
            self._warming_thread = threading.get_ident()
            start = time.perf_counter()
            try:
                with torch.no_grad():  # grad mode is per thread; freezing needs inference
                    run()
            except Exception as error:  # a missing C++ compiler, an unsupported op: serve eagerly
                self.error = error
                log.warning("compiling the denoiser failed (%s: %s); sampling stays eager", type(error).__name__, error)
                return
            finally:
                self._warming_thread = None
            self.seconds = time.perf_counter() - start
            log.info("denoiser compiled in %.1f s", self.seconds)
            self._ready.set()

        if not background:
            work()
            return None
        thread = threading.Thread(target=work, name="omfa-compile", daemon=True)
        thread.start()
        return thread
