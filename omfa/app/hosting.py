"""Hosting in public: the limits one client meets, and the ASGI layer that enforces those Gradio cannot.

A public Space is reached by clients that never open a browser. Without
limits, one of them fills the queue with runs whose results it never reads,
sends bodies of hundreds of megabytes, uploads until the disk is full, or
uses routes the app does not need (direct `/run/` calls that skip the queue,
deep links that write a session's state to a served file, the monitoring
summary). `HostingLimits` holds every limit as a setting with a safe default
(environment variables, read by `app.py`); `HostingGuard` is the middleware
that answers such requests with one clear status (403, 404, 411, 413, 429)
and one short log line. The queue's own limits (places per client, one
running job, unread runs dropped) live in `omfa.app.gradio_queue`, the one
module that reaches into Gradio's internals.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from omfa.app import gradio_queue
from omfa.app.uploads import REFUSED_REMOTE_FILE

log = logging.getLogger("omfa.hosting")

MB = 2**20
# Multipart headers and boundaries around one uploaded file: a request may exceed the file limit by this much.
MULTIPART_SLACK = 64 * 1024
# Any spelling of Gradio's file routes (`/file=`, the older `/file/`, `/proxy=`) followed by a URL scheme,
# checked on the path decoded until it no longer changes (so `%2568ttp%253A` is caught too).
_REMOTE_FILE = re.compile(r"/(?:file|proxy)[=/]+\s*[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_PROXY = re.compile(r"/proxy=", re.IGNORECASE)
_CALL_RESULT = re.compile(r"^/gradio_api/call/(?:v2/)?[^/]+/([^/]+)/?$")
_RUN_INPUTS = re.compile(r"^/gradio_api/(?:queue/join|call/(?:v2/)?[^/]+|run/[^/]+|api/[^/]+)$")


@dataclass(frozen=True)
class HostingLimits:
    """What one client may do; each field is also the environment variable `OMFA_<FIELD>` (upper case).

    queue_size: sampling runs waiting at once, all clients together (more get "Queue is full").
    pose_queue_size: Pose Studio edits waiting at once: their own queue, so a full sampling queue never blocks them.
    places_per_client: places one client (one IP address, and one session) holds in each queue, running included;
        of these at most one runs at a time.
    unread_grace_s: a run whose session has not opened its result stream this long after joining is dropped.
    max_body_bytes: any request body but an upload.
    max_value_chars: one string among a run's inputs (a preset name, a file path): an error message that
        names a refused value then never carries more than this of it.
    max_upload_bytes: one uploaded file (Gradio's `max_file_size`); one upload request may carry this much.
    upload_quota_bytes: what one client may upload within `upload_window_s`.
    open_api: serve the direct `/run/<api>` routes, which skip the queue (off: every run waits its turn).
    deep_links: serve `/gradio_api/deep_link`, which writes a session's state to a file.
    monitoring: serve Gradio's `/monitoring` pages.
    """

    queue_size: int = 64
    pose_queue_size: int = 64
    places_per_client: int = 3
    unread_grace_s: float = 20.0
    max_body_bytes: int = 1 * MB
    max_value_chars: int = 1000
    max_upload_bytes: int = 25 * MB
    upload_quota_bytes: int = 200 * MB
    upload_window_s: float = 3600.0
    open_api: bool = False
    deep_links: bool = False
    monitoring: bool = False

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, bool) and value <= 0:
                raise ValueError(f"hosting limit {field.name} is {value}; it must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HostingLimits:
        """The defaults, overridden by `OMFA_QUEUE_SIZE=32`, `OMFA_OPEN_API=1`, ... in `environ` (default os.environ).

        Raises ValueError naming the variable when a value cannot be read."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            name = f"OMFA_{field.name.upper()}"
            if name not in environ:
                continue
            raw = environ[name].strip()
            kind = type(field.default)
            try:
                values[field.name] = raw.lower() in ("1", "true", "yes", "on") if kind is bool else kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a {kind.__name__}") from None
        return cls(**values)

    @property
    def max_upload_request_bytes(self) -> int:
        """The largest upload request: one file at the limit and its multipart framing."""
        return self.max_upload_bytes + MULTIPART_SLACK


def client_address(scope: Mapping[str, Any]) -> str:
    """The client's IP address: uvicorn's, which follows X-Forwarded-For only from a trusted proxy
    (`FORWARDED_ALLOW_IPS`, loopback by default)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def decoded_path(scope: Mapping[str, Any]) -> str:
    """The request path percent-decoded until it no longer changes (double encoding is a common trick)."""
    path = scope.get("path", "")
    for _ in range(4):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return path


class UploadLedger:
    """Bytes each client uploaded within the window: a sliding sum per client, for at most `clients` clients."""

    def __init__(self, quota_bytes: int, window_s: float, clients: int = 10_000) -> None:
        self.quota_bytes = quota_bytes
        self.window_s = window_s
        self.clients = clients
        self._sent: OrderedDict[str, deque[tuple[float, int]]] = OrderedDict()

    def used(self, client: str, now: float | None = None) -> int:
        """Bytes `client` uploaded within the window ending `now`."""
        now = time.monotonic() if now is None else now
        sent = self._sent.get(client)
        if sent is None:
            return 0
        while sent and sent[0][0] <= now - self.window_s:
            sent.popleft()
        return sum(size for _, size in sent)

    def admit(self, client: str, size: int, now: float | None = None) -> bool:
        """Count an upload of `size` bytes, or refuse it (False, nothing counted) when it would pass the quota."""
        now = time.monotonic() if now is None else now
        if self.used(client, now) + size > self.quota_bytes:
            return False
        self._sent.setdefault(client, deque()).append((now, size))
        self._sent.move_to_end(client)
        while len(self._sent) > self.clients:
            self._sent.popitem(last=False)
        return True


def _size(count: int) -> str:
    return f"{count / MB:g} MB" if count >= MB else f"{count} bytes"


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class HostingGuard:
    """ASGI middleware: body sizes, upload quotas, run ownership and the routes a public app does not serve.

    Install it with `launch(app_kwargs={"middleware": [Middleware(HostingGuard, limits=...)]})`
    (`app.py` does). Each refusal is an HTTP status with a one-sentence JSON `detail` and one log line.
    """

    def __init__(self, app: Any, limits: HostingLimits) -> None:
        self.app = app
        self.limits = limits
        self.uploads = UploadLedger(limits.upload_quota_bytes, limits.upload_window_s)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body: list[bytes] = []  # a body the guard had to read, handed on to the app
        refusal = (
            self.refusal(scope)
            or await self.inputs(scope, receive, body)
            or self.ownership(scope, body[0] if body else None)
        )
        if refusal is None:
            await self.app(scope, _replay(body[0], receive) if body else receive, send)
            return
        status, detail = refusal
        path = decoded_path(scope)
        log.warning("refused %s %s from %s: %d %s", scope["method"], path[:120], client_address(scope), status, detail)
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)

    def refusal(self, scope: dict) -> tuple[int, str] | None:
        """(status, reason) when the request is refused on its path and headers alone, else None."""
        path = decoded_path(scope)
        if _REMOTE_FILE.search(path) or _PROXY.search(path):
            return 403, REFUSED_REMOTE_FILE
        route = path.rstrip("/")
        if route == "/gradio_api/deep_link" and not self.limits.deep_links:
            return 404, "Deep links are off on this server"
        if (route == "/monitoring" or route.startswith("/monitoring/")) and not self.limits.monitoring:
            return 404, "Monitoring is off on this server"
        if route.startswith("/gradio_api/stream/"):  # streamed inputs (webcam, microphone): the app has none
            return 404, "This app takes no streamed inputs"
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return None
        length = _header(scope, b"content-length")
        if length is None or not length.isdigit():
            if _header(scope, b"transfer-encoding"):
                return 411, "Send the request with a Content-Length header"
            return None
        size = int(length)
        if route == "/gradio_api/upload":
            if size > self.limits.max_upload_request_bytes:
                return 413, f"An upload request carries at most one file of up to {_size(self.limits.max_upload_bytes)}"
            if not self.uploads.admit(client_address(scope), size):
                quota, hours = _size(self.limits.upload_quota_bytes), self.limits.upload_window_s / 3600
                return 413, f"Upload quota reached ({quota} per {hours:g} h); try again later"
            return None
        if size > self.limits.max_body_bytes:
            return 413, f"Request body over {_size(self.limits.max_body_bytes)}"
        return None

    async def inputs(self, scope: dict, receive: Any, body: list[bytes]) -> tuple[int, str] | None:
        """(413, reason) when a run's inputs hold a string longer than `max_value_chars`, else None.

        Reads the (already size-checked) body of a run or a cancellation and appends it to `body`."""
        route = decoded_path(scope).rstrip("/")
        if scope["method"] != "POST" or not (_RUN_INPUTS.match(route) or route == "/gradio_api/cancel"):
            return None
        body.append(await _read_body(receive))
        if _RUN_INPUTS.match(route) and _longest_string(body[0]) > self.limits.max_value_chars:
            return 413, f"An input value is over {self.limits.max_value_chars} characters"
        return None

    def ownership(self, scope: dict, body: bytes | None) -> tuple[int, str] | None:
        """(404, reason) when a request names a session or a run that is not the caller's, else None.

        A run is the session's that joined it: cancelling it needs that session (`/cancel` names both),
        and reading a result by run id alone (`/call/<api>/<id>`) is only for runs made by `/call/<api>`."""
        queue = gradio_queue.served_queue(scope)
        if queue is None:
            return None
        route = decoded_path(scope).rstrip("/")
        if route == "/gradio_api/queue/data":
            session = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash") or [""])[0]
            if not queue.knows_session(session):
                return 404, "No such session (it ended, or the run was dropped)"
            queue.mark_read(session)
            return None
        if scope["method"] == "GET" and (match := _CALL_RESULT.match(route)):
            event_id = match.group(1)
            if queue.session_of(event_id) != event_id:
                return 404, "No such run"
            queue.mark_read(event_id)
            return None
        if route == "/gradio_api/cancel" and body is not None:
            try:
                request = json.loads(body)
                session, event_id = str(request["session_hash"]), str(request["event_id"])
            except (ValueError, KeyError, TypeError):
                return None  # Gradio answers a malformed body with 422
            owner = queue.session_of(event_id)
            if owner is not None and owner != session:
                return 404, "No such run in this session"
        return None


async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's answer to a malformed body (HTTP 422), without the value it refused: FastAPI's own
    echoes the whole value back (however large), this names where the problem is and what it is."""
    problems = error.errors()
    first = problems[0] if problems else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    detail = f"Invalid request: {where}: {first.get('msg', 'malformed')}"[:200]
    client = client_address(request.scope)
    log.warning("refused %s %s from %s: 422 %s", request.method, request.url.path[:120], client, detail)
    return JSONResponse({"detail": detail}, status_code=422)


def _longest_string(body: bytes) -> int:
    """The length of the longest string anywhere in a JSON body (0 when it is not JSON: Gradio answers that)."""
    try:
        stack = [json.loads(body)]
    except ValueError:
        return 0
    longest = 0
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            longest = max(longest, len(value))
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return longest


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """An ASGI `receive` that hands the app a body already read, then defers to the real one (disconnects)."""
    pending = [body]

    async def replayed() -> dict:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replayed
