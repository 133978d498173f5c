"""The app under test: `app.py` served from a source checkout in a child process, watched from outside.

The server runs in its own process so that its memory, threads and CPU time
are its own (read from /proc through psutil) and so that a crash shows as a
dead process. Its Gradio upload folder and temporary folder live in a
private work folder, so that what it writes can be inspected and is removed
with the folder. Requests go through `gradio_client` like any API user's,
or through raw HTTP where a test must send what `gradio_client` would not
(a server-side path, a URL, a hostile file name).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image

from benchmarks.models import random_weights_pipe
from omfa.app.hosting import HostingLimits
from omfa.pipeline import DEFAULT_MODEL_DIR

ROOT = Path(__file__).resolve().parents[2]  # the source checkout: app.py, tests/, assets/
EXAMPLES = ROOT / "assets" / "examples"
API = "/gradio_api"
# What a Gradio server says when a handler raised something other than gr.Error (its details stay hidden).
GENERIC_ERROR = "has not enabled verbose error reporting"
# The hosting settings the harness changes: a run nobody reads is dropped after this long, so that the
# check of it waits seconds, not the default's 20 s (every client of the harness opens its stream at once).
HARNESS_HOSTING = {"OMFA_UNREAD_GRACE_S": "6"}


class ReliabilityError(ValueError):
    """The reliability run cannot start (no source checkout, a server that does not come up)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def served_checkpoint(folder: Path, seed: int = 0) -> tuple[Path, str]:
    """The shipped checkpoint when present, else a tiny seeded one written to `folder` (same loading path)."""
    if (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        return DEFAULT_MODEL_DIR, f"shipped checkpoint ({DEFAULT_MODEL_DIR.name})"
    pipe = random_weights_pipe("tiny", seed, scale=0.05)
    pipe.save_pretrained(folder)
    params = sum(p.numel() for p in pipe.transformer.parameters())
    return folder, f"'tiny' preset with seeded random weights ({params / 1e6:.2f} M parameters)"


def app_module() -> ModuleType:
    """`app.py` of the source checkout, imported by path (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("omfa_served_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ServedApp:
    """`python app.py --model MODEL` on 127.0.0.1 in a child process; a context manager.

    Args:
        model: checkpoint folder.
        workdir: private folder for the server's uploads (`GRADIO_TEMP_DIR`), its
            temporary files (`TMPDIR`) and its log.
        start_timeout_s: how long the server may take to load and warm up.
        hosting: `OMFA_*` hosting settings for the server (`omfa.app.hosting.HostingLimits`), on top of
            the environment's; `limits` is what the server runs with.

    Every simulated client gets its own IP address (`new_address`), sent as X-Forwarded-For, which
    uvicorn trusts from loopback as it would from a proxy: the server's per-client limits then
    apply to each client of a check apart, as they would to users of a public Space.
    """

    def __init__(
        self,
        model: Path,
        workdir: Path,
        start_timeout_s: float = 300.0,
        hosting: dict[str, str] | None = None,
    ) -> None:
        if not (ROOT / "app.py").is_file():
            raise ReliabilityError(f"no app.py in {ROOT}; run the reliability bench from a source checkout")
        self.model = Path(model)
        # The size of the app's result images: the served model's canvas (the page enlarges them).
        self.result_hw = tuple(json.loads((self.model / "transformer" / "config.json").read_text())["sample_size"])
        self.workdir = Path(workdir)
        self.upload_dir = self.workdir / "gradio"
        self.tmp_dir = self.workdir / "tmp"
        self.log_path = self.workdir / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._config: dict | None = None
        self._http = httpx.Client(timeout=30)  # one connection for bursts of queue requests
        self.ps: psutil.Process | None = None
        self.hosting = {**HARNESS_HOSTING, **(hosting or {})}
        self.limits = HostingLimits.from_env({**os.environ, **self.hosting})
        self._addresses = 0

    def __enter__(self) -> ServedApp:
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "PYOPENGL_PLATFORM": "egl",
            "GRADIO_TEMP_DIR": str(self.upload_dir),
            "TMPDIR": str(self.tmp_dir),
            **self.hosting,
        }
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "app.py", "--model", str(self.model), "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.ps = psutil.Process(self._proc.pid)
        deadline = time.monotonic() + self.start_timeout_s
        while not self.responds():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise ReliabilityError(
                    f"the app did not start within {self.start_timeout_s:.0f} s; "
                    f"last lines of its log:\n{self.log_tail()}"
                )
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        self._http.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- health and resources -------------------------------------------------

    def responds(self) -> bool:
        """The process is alive and answers its config route."""
        if self._proc is None or self._proc.poll() is not None:
            return False
        try:
            return httpx.get(f"{self.url}/config", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def rss_mb(self) -> float:
        """Resident memory now, in MiB."""
        return self.ps.memory_info().rss / 2**20

    def reset_peak(self) -> bool:
        """Reset the kernel's peak-RSS mark (VmHWM) so that `peak_rss_mb` covers what follows; False if refused."""
        try:
            Path(f"/proc/{self.ps.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def peak_rss_mb(self) -> float:
        """Peak resident memory (VmHWM) since the start or the last `reset_peak`, in MiB."""
        for line in Path(f"/proc/{self.ps.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return self.rss_mb()

    def threads(self) -> int:
        return self.ps.num_threads()

    def cpu_s(self) -> float:
        """User + system CPU seconds the server has used."""
        times = self.ps.cpu_times()
        return times.user + times.system

    # -- clients -------------------------------------------------------------

    def new_address(self) -> str:
        """An IP address no client of this server has used yet (10.x.y.z): a new simulated user."""
        self._addresses += 1
        k = self._addresses
        return f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"

    def client(self, address: str | None = None) -> Any:
        """A `gradio_client.Client` of this server that sends from `address` (default: a new one)."""
        from gradio_client import Client

        headers = {"X-Forwarded-For": address or self.new_address()}
        return Client(self.url, verbose=False, download_files=False, headers=headers)

    # -- raw HTTP ------------------------------------------------------------

    def fn_index(self, api_name: str) -> int:
        """The dependency id of an endpoint such as "/try_on"."""
        if self._config is None:
            self._config = httpx.get(f"{self.url}/config", timeout=10).json()
        for dep in self._config["dependencies"]:
            if dep.get("api_name") == api_name.lstrip("/"):
                return dep["id"]
        raise ReliabilityError(f"the app has no endpoint {api_name}")

    @staticmethod
    def _from(address: str | None) -> dict[str, str]:
        return {"X-Forwarded-For": address} if address else {}

    def upload(self, data: bytes, filename: str, address: str | None = None) -> httpx.Response:
        """POST a file to Gradio's upload route as a browser does (from `address`, default 127.0.0.1)."""
        files = {"files": (filename, data)}
        return httpx.post(f"{self.url}{API}/upload", files=files, headers=self._from(address), timeout=60)

    def join(
        self, api_name: str, data: list[Any], session: str | None = None, address: str | None = None
    ) -> httpx.Response:
        """Put one event in the queue (`/queue/join`) without reading its results."""
        body = {
            "data": data,
            "fn_index": self.fn_index(api_name),
            "session_hash": session or uuid.uuid4().hex,
            "event_data": None,
            "trigger_id": None,
        }
        return self._http.post(f"{self.url}{API}/queue/join", json=body, headers=self._from(address))

    def cancel(self, session: str, fn_index: int, event_id: str, address: str | None = None) -> httpx.Response:
        """Cancel one event as the Stop button does (`/cancel`): a waiting event leaves the queue."""
        body = {"session_hash": session, "fn_index": fn_index, "event_id": event_id}
        return self._http.post(f"{self.url}{API}/cancel", json=body, headers=self._from(address))

    def raw_call(self, api_name: str, data: list[Any], timeout_s: float = 60.0) -> tuple[bool, str]:
        """Run one event from raw JSON, from a new address, and read its stream: (success, error or "")."""
        session, address = uuid.uuid4().hex, self.new_address()
        joined = self.join(api_name, data, session, address)
        if joined.status_code != 200:
            return False, f"HTTP {joined.status_code}: {joined.text[:300]}"
        with httpx.stream(
            "GET",
            f"{self.url}{API}/queue/data",
            params={"session_hash": session},
            headers=self._from(address),
            timeout=timeout_s,
        ) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    output = message.get("output") or {}
                    return bool(message.get("success")), str(output.get("error") or "")
        return False, "the event stream ended without a result"


@dataclass(frozen=True)
class Outcome:
    """One API request: finished without error, seconds from submit to result, the error or final status."""

    ok: bool
    seconds: float
    message: str
    outputs: tuple = ()


def call(client: Any, api_name: str, *args: Any) -> Outcome:
    """Run an endpoint through `gradio_client` and wait for its last output."""
    from gradio_client.exceptions import AppError

    start = time.perf_counter()
    try:
        out = client.predict(*args, api_name=api_name)
    except AppError as error:
        return Outcome(False, time.perf_counter() - start, str(error))
    except Exception as error:  # an upload refused by the server, a queue error, a broken connection
        return Outcome(False, time.perf_counter() - start, f"{type(error).__name__}: {error}")
    out = tuple(out) if isinstance(out, (list, tuple)) else (out,)
    return Outcome(True, time.perf_counter() - start, str(out[-1]), out)


def unclear(message: str) -> str | None:
    """Why an error message is not a clear message for a user, or None when it is one.

    Clear: the app's own sentence (not Gradio's hidden-error notice, not a
    traceback), short, and naming no server path.
    """
    if GENERIC_ERROR in message:
        return "Gradio's generic error: the app raised something other than a user error"
    if "Traceback" in message or 'File "' in message:
        return "a traceback"
    if any(root in message for root in ("/tmp/", "/work/", "/home/", "/root/", "/usr/", "site-packages")):
        return "names a server path"
    if not 15 <= len(message) <= 800:  # a list of the valid choices may be long
        return f"{len(message)} characters long"
    return None


def fetch_image(file: dict) -> np.ndarray:
    """Download an output image given as `gradio_client` returns it when not downloading (a FileData dict).

    Returns (H, W, 3) uint8."""
    response = httpx.get(file["url"], timeout=30)
    response.raise_for_status()
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
