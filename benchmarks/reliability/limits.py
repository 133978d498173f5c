"""The server's limits, probed from outside: upload size, served files, user input as paths or URLs, weights.

- `max_file_size`: the server itself refuses a larger upload (a browser or
  a custom client may skip gradio_client's own check).
- `allowed_paths`: only the examples folder; nothing else of the checkout,
  the model, the system or the app's private temporary files is served,
  also not through `..` or encoded paths; internal errors stay hidden and
  the page names no path of the checkout.
- User input never becomes a path or URL the server opens: a server path or
  a URL sent in place of an upload, a hostile upload file name, names of
  presets or schedulers that look like paths, `/file=<URL>`.
- Model weights load from safetensors only: a pickled checkpoint is refused
  without being unpickled.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
from diffusers.utils import logging as diffusers_logging
from gradio_client import handle_file

from benchmarks.reliability.report import CheckResult
from benchmarks.reliability.server import API, EXAMPLES, ROOT, ServedApp, app_module, call, unclear
from omfa.pipeline import OMFAPipeline

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")
MAX_UPLOAD_BYTES = 25 * 2**20


class Listener:
    """A TCP socket on 127.0.0.1 that counts connections: shows whether the server tried to fetch a URL."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _refused(response: httpx.Response) -> str | None:
    return None if response.status_code in (403, 404) else f"served with HTTP {response.status_code}"


def check_served_files(app: ServedApp, result: CheckResult) -> None:
    """allowed_paths is the examples folder alone, and nothing outside it or the outputs is served."""
    settings = app_module().launch_kwargs()
    result.record(
        "internal errors stay hidden (show_error off)", "show_error is on" if settings.get("show_error") else None
    )
    page = httpx.get(f"{app.url}/config", timeout=10).text
    result.record(
        "the page config names no path of the checkout or the model",
        "it does" if str(ROOT) in page or str(app.model) in page else None,
    )
    allowed = settings["allowed_paths"]
    result.record(
        "allowed_paths is the examples folder only",
        None if [Path(p) for p in allowed] == [EXAMPLES] else f"allowed_paths is {allowed}",
    )
    odd = [
        p.name
        for p in EXAMPLES.iterdir()
        if p.is_symlink() or not p.is_file() or p.name.startswith(".") or p.suffix not in (".png", ".jpg")
    ]
    result.record("the examples folder holds only images", f"also holds {odd}" if odd else None)
    get = lambda path: httpx.get(f"{app.url}{API}/file={path}", timeout=10)  # noqa: E731
    result.record(
        "an example image is served",
        None if get(EXAMPLES / "portrait.png").status_code == 200 else "the example image was refused",
    )
    private = sorted(app.tmp_dir.glob("omfa-files-*/*.png"))[:1]
    weights = sorted(app.model.rglob("*.safetensors"))[:1]
    secrets = {
        "app.py": ROOT / "app.py",
        "the model weights": weights[0] if weights else app.model,
        "/etc/passwd": "/etc/passwd",
        "the server log": app.log_path,
        "the app's private output files": private[0] if private else app.tmp_dir,
        "examples/../../app.py": f"{EXAMPLES}/../../app.py",
        "encoded ..": f"{EXAMPLES}/%2e%2e/%2e%2e/app.py",
        "relative app.py": "app.py",
    }
    for what, path in secrets.items():
        result.record(f"not served: {what}", _refused(get(path)))


def check_upload_route(app: ServedApp, result: CheckResult) -> None:
    """The upload route refuses big files itself and keeps every upload inside its folder, whatever its name."""
    big = app.upload(b"\x00" * (MAX_UPLOAD_BYTES + 1), "big.png")
    result.record(
        "the server refuses an upload over 25 MB",
        None if big.status_code == 413 else f"HTTP {big.status_code}: {big.text[:100]}",
    )
    for name in ("../../../../evil.png", "/etc/evil.png", "..\\..\\evil.png", "evil\x00.png"):
        response = app.upload(b"\x89PNG\r\n\x1a\n", name)
        stored = [Path(p) for p in response.json()] if response.status_code == 200 else []
        outside = [p for p in stored if not p.resolve().is_relative_to(app.upload_dir.resolve())]
        result.record(f"upload named {name!r} stays in the upload folder", f"stored at {outside}" if outside else None)
    escaped = [p for p in (app.workdir / "evil.png", Path("/evil.png"), Path("/etc/evil.png")) if p.exists()]
    result.record("no upload written outside the upload folder", f"found {escaped}" if escaped else None)


def check_user_paths_and_urls(app: ServedApp, result: CheckResult) -> None:
    """Paths and URLs in place of uploads, and names that look like paths, are refused with nothing opened."""
    listener = Listener()
    top = {"path": str(EXAMPLES / "top.png"), "meta": {"_type": "gradio.FileData"}}
    run = ["upper", "preset", "a_pose", 0, 1, 2.0, 0, "ddim"]
    try:
        for what, path in {
            "/etc/passwd": "/etc/passwd",
            "app.py": str(ROOT / "app.py"),
            "an example path": str(EXAMPLES / "portrait.png"),
            "a local URL": f"http://127.0.0.1:{listener.port}/portrait.png",
            "a public URL": "https://example.com/portrait.png",
        }.items():
            ok, message = app.raw_call("/try_on", [{"path": path, "meta": {"_type": "gradio.FileData"}}, top, *run])
            result.record(f"upload given as {what}", "accepted" if ok else None)
        result.record(
            "the server connected to no URL it was given",
            f"{listener.connections} connections" if listener.connections else None,
        )
        remote = httpx.get(f"{app.url}{API}/file=http://127.0.0.1:{listener.port}/x.png", timeout=10)
        result.record(
            "/file=<URL> is not fetched",
            _refused(remote) or (None if listener.connections == 0 else "the server fetched it"),
        )
    finally:
        listener.close()
    client = app.client()
    portrait, garment = handle_file(str(EXAMPLES / "portrait.png")), handle_file(str(EXAMPLES / "top.png"))
    for what, args in {
        "a preset named like a path": (
            "/try_on",
            portrait,
            garment,
            "upper",
            "preset",
            "../../../etc/passwd",
            0,
            1,
            2.0,
            0,
            "ddim",
        ),
        "a scheduler named like a URL": (
            "/try_on",
            portrait,
            garment,
            "upper",
            "preset",
            "a_pose",
            0,
            1,
            2.0,
            0,
            "file:///etc/passwd",
        ),
        "a gallery pose named like a path": ("/pose_gallery", portrait, ["/etc/passwd"], [0], 1, 2.0, 0, "ddim"),
        "a studio preset named like a path": ("/pose_preset", "../../app.py", "left_shoulder"),
    }.items():
        outcome = call(client, *args)
        result.record(what, "accepted" if outcome.ok else unclear(outcome.message))


def pickle_trap(marker: Path) -> bytes:
    """A pickle that creates `marker` when unpickled: proof of whether a loader unpickles."""

    class Trap:
        def __reduce__(self) -> tuple[Callable, tuple]:
            return Path.touch, (marker,)

    return pickle.dumps(Trap())


def check_safetensors_only(app: ServedApp, folder: Path, result: CheckResult) -> None:
    """The served weights are safetensors, no pickle ships in assets/, and a pickled checkpoint is refused unread."""
    pickled = [str(p.relative_to(app.model)) for p in app.model.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    result.record("the served checkpoint holds no pickle", f"holds {pickled}" if pickled else None)
    shipped = [str(p.relative_to(ROOT)) for p in (ROOT / "assets").rglob("*") if p.suffix in PICKLE_SUFFIXES]
    result.record("assets/ holds no pickle", f"holds {shipped}" if shipped else None)
    trap = folder / "pickled-checkpoint"
    shutil.copytree(app.model, trap, ignore=shutil.ignore_patterns("*.safetensors"), dirs_exist_ok=True)
    marker = folder / "unpickled.marker"
    (trap / "transformer" / "diffusion_pytorch_model.bin").write_bytes(pickle_trap(marker))
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)  # the refusal is expected: keep its log off the report
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # and its progress bar
            OMFAPipeline.load(trap, device="cpu")
        problem = "the pickled checkpoint loaded"
    except Exception:  # any refusal will do (diffusers raises OSError for a missing safetensors file)
        problem = None
    finally:
        diffusers_logging.set_verbosity(verbosity)
    if marker.exists():
        problem = "the checkpoint's pickle ran"
    result.record("a pickled checkpoint is refused without unpickling", problem)


def check_limits(app: ServedApp, folder: Path) -> CheckResult:
    """Every limit above, one case each."""
    result = CheckResult("limits and exposure")
    check_upload_route(app, result)
    check_served_files(app, result)
    check_user_paths_and_urls(app, result)
    check_safetensors_only(app, folder, result)
    result.figures = {"server up": app.responds()}
    return result
