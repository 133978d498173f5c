"""The app as a public host meets hostile clients: raw HTTP on 127.0.0.1, one check per way to take it down.

- `check_queue_share`: one client (one address, or one session) holds at most
  `places_per_client` places of a queue and runs one job at a time; runs whose
  stream nobody opens are dropped after `unread_grace_s`, which frees their places.
- `check_request_sizes`: a body over the limit gets 413 with a short answer and
  one log line; a rejected value is not echoed; an upload request carries one
  file; a client's uploads over time meet a quota.
- `check_remote_files`: no spelling of Gradio's file routes fetches a URL or
  serves a file outside the examples and the outputs.
- `check_maximal_run`: the largest gallery (12 views at many steps), read as a
  client reads it, stays within a peak memory budget, and the memory returns.
- `check_ownership_and_routes`: cancelling or reading a run needs its own
  session; direct `/run/` calls, deep links and monitoring are off.
- `check_log_lines`: hostile requests (an unknown session, an event that is not
  queued) get a clear status and one log line, no traceback.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from gradio_client import handle_file

from benchmarks.reliability.limits import Listener
from benchmarks.reliability.report import CheckResult
from benchmarks.reliability.server import API, EXAMPLES, ROOT, ServedApp, call
from benchmarks.reliability.uploads import DONE
from omfa.app.uploads import REFUSED_REMOTE_FILE

MB = 2**20
LONG_STEPS = 100  # the app's largest step count: a run still going while the check looks at it
MAX_PEAK_GROWTH_MB = 500.0  # the stated budget of one maximal request on the CPU
MAX_LEFT_MB = 50.0  # what a finished maximal run may leave resident (the frames of main kept 112 MB)
MAX_ANSWER_BYTES = 1024  # a refusal is a sentence, never the refused value
MAX_LOG_LINE_BYTES = 600  # one short log line per hostile request
GALLERY_12 = (["a_pose", "walking", "t_pose"], [0, 90, 180, -90])  # 3 poses x 4 turns: the most views allowed


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer as the checks judge it; status None when the server broke the connection off."""

    status: int | None
    content: bytes = b""

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace") if self.status else "the server broke the connection off"


def _http(method: str, url: str, **kwargs: Any) -> _Answer:
    """One raw request, never raising: a hostile request may make a server cut its answer short."""
    try:
        response = httpx.request(method, url, timeout=kwargs.pop("timeout", 60), **kwargs)
    except httpx.HTTPError:
        return _Answer(None)
    return _Answer(response.status_code, response.content)


def _file(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


class _Stream(threading.Thread):
    """Read one session's result stream (`/queue/data`) in the background, keeping every message."""

    def __init__(self, app: ServedApp, session: str, address: str, timeout_s: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.app, self.session, self.address, self.timeout_s = app, session, address, timeout_s
        self.status: int | None = None
        self.messages: list[dict] = []
        self.start()

    def run(self) -> None:
        try:
            with httpx.stream(
                "GET",
                f"{self.app.url}{API}/queue/data",
                params={"session_hash": self.session},
                headers={"X-Forwarded-For": self.address},
                timeout=self.timeout_s,
            ) as stream:
                self.status = stream.status_code
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        self.messages.append(json.loads(line[5:]))
                        if self.messages[-1].get("msg") == "close_stream":
                            return
        except httpx.HTTPError:
            return

    def completed(self, event_id: str) -> dict | None:
        return next(
            (m for m in self.messages if m.get("msg") == "process_completed" and m.get("event_id") == event_id), None
        )


def _try_off(app: ServedApp, steps: int, seed: int = 0) -> list[Any]:
    uploaded = app.upload((EXAMPLES / "dressed.png").read_bytes(), "dressed.png").json()[0]
    return [_file(uploaded), "upper", steps, 2.0, seed, "ddim"]


class _Log:
    """What the server wrote to its log since a mark."""

    def __init__(self, app: ServedApp) -> None:
        self.path = app.log_path
        self.mark = self.path.stat().st_size

    def since(self) -> str:
        with open(self.path, "rb") as log:
            log.seek(self.mark)
            return log.read().decode(errors="replace")


def check_queue_share(app: ServedApp) -> CheckResult:
    """Places per client (by address and by session), one running job per client, unread runs dropped."""
    result = CheckResult("queue share of one client")
    places, grace = app.limits.places_per_client, app.limits.unread_grace_s
    data = _try_off(app, LONG_STEPS)
    by_address = app.new_address()
    answers = [app.join("/try_off", data, uuid.uuid4().hex, by_address).status_code for _ in range(places + 1)]
    result.record(
        f"one address, new sessions: {places} places, then 429",
        None if answers == [200] * places + [429] else f"answers {answers}",
    )
    session = uuid.uuid4().hex
    answers = [app.join("/try_off", data, session, app.new_address()).status_code for _ in range(places + 1)]
    result.record(
        f"one session, new addresses: {places} places, then 429",
        None if answers == [200] * places + [429] else f"answers {answers}",
    )
    # None of these runs is read: after the grace period they are dropped and their places are free again.
    time.sleep(grace + 2.0)
    again = app.join("/try_off", _try_off(app, 1), uuid.uuid4().hex, by_address)
    result.record(
        f"runs nobody reads are dropped after {grace:g} s: the client's places are free again",
        None if again.status_code == 200 else f"HTTP {again.status_code}: {again.text[:100]}",
    )
    # One client, two runs in the Pose Studio's queue (it runs four at once): the second starts after the first.
    photo = app.upload((EXAMPLES / "portrait_2.png").read_bytes(), "photo.png").json()[0]
    session, address = uuid.uuid4().hex, app.new_address()
    ids = [
        app.join("/pose_from_photo", [_file(photo), "left_shoulder"], session, address).json().get("event_id")
        for _ in range(2)
    ]
    stream = _Stream(app, session, address)
    stream.join(60.0)
    order = [(m["msg"], ids.index(m["event_id"])) for m in stream.messages if m.get("event_id") in ids]
    marks = {event: order.index(event) for event in order if event[0] in ("process_starts", "process_completed")}
    problem = None
    if len(marks) < 4:
        problem = f"not both ran: {order}"
    elif (
        marks["process_starts", 1] < marks["process_completed", 0]
        and marks["process_starts", 0] < marks["process_completed", 1]
    ):
        problem = "the client's two runs ran at the same time"
    result.record("a client runs one job at a time (its second waits for its first)", problem)
    result.figures = {"places per client": places, "unread grace s": grace}
    return result


def check_request_sizes(app: ServedApp) -> CheckResult:
    """413 for a body over the limit, no echo of a refused value, one file per upload request, a quota."""
    result = CheckResult("request sizes")
    log = _Log(app)
    join = f"{app.url}{API}/queue/join"
    big = b'{"data": ["' + b"A" * (app.limits.max_body_bytes + MB) + b'"], "fn_index": 2, "session_hash": "x"}'
    answer = _http("POST", join, content=big, headers={"content-type": "application/json"}, timeout=60)
    result.record(
        f"a {len(big) / MB:.0f} MB JSON body gets 413 and a short answer",
        None
        if answer.status == 413 and len(answer.content) <= MAX_ANSWER_BYTES
        else f"HTTP {answer.status}, {len(answer.content)} bytes back",
    )
    bad = {"data": [], "fn_index": "A" * 200_000, "session_hash": "x"}
    answer = _http("POST", join, json=bad, timeout=60)
    result.record(
        "a refused 200 kB value is not echoed",
        None
        if 400 <= (answer.status or 0) < 500 and len(answer.content) <= MAX_ANSWER_BYTES
        else f"HTTP {answer.status}, {len(answer.content)} bytes back",
    )
    inputs = _try_off(app, 1)
    inputs[-1] = "A" * 300_000  # as the scheduler's name: a choice that does not exist, and a long one
    ok, message = app.raw_call("/try_off", inputs)
    result.record(
        "a 300 kB input value is refused and not echoed",
        None if not ok and len(message) <= MAX_ANSWER_BYTES else f"{len(message)} characters back",
    )
    written = log.since()
    result.record(
        "each refusal is one short log line",
        None
        if len(written) <= 3 * MAX_LOG_LINE_BYTES and "Traceback" not in written
        else f"the log grew {len(written)} bytes",
    )
    file = b"\x00" * (app.limits.max_upload_bytes - MB)
    answer = _http(
        "POST",
        f"{app.url}{API}/upload",
        files=[("files", ("a.png", file)), ("files", ("b.png", file))],
        headers={"X-Forwarded-For": app.new_address()},
        timeout=120,
    )
    result.record(
        f"one upload request with two {len(file) / MB:.0f} MB files gets 413",
        None if answer.status == 413 else f"HTTP {answer.status}",
    )

    def chunks() -> Any:
        yield b"--x\r\n"  # a body without Content-Length: its size is not known before it is read

    answer = _http(
        "POST",
        f"{app.url}{API}/upload",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=x"},
        timeout=30,
    )
    result.record(
        "an upload without Content-Length is refused",
        None if answer.status in (411, 413) else f"HTTP {answer.status}",
    )
    address, sent, refused = app.new_address(), 0, None
    quota = app.limits.upload_quota_bytes
    for k in range(quota // len(file) + 2):
        answer = app.upload(file, f"part{k}.png", address)
        if answer.status_code != 200:
            refused = answer.status_code
            break
        sent += len(file)
    result.record(
        f"one client's uploads stop at its quota ({quota / MB:g} MB): 413",
        None if refused == 413 and sent <= quota else f"{sent / MB:.0f} MB accepted, then {refused}",
    )
    other = app.upload(b"\x89PNG\r\n\x1a\n", "other.png", app.new_address())
    result.record("another client still uploads", None if other.status_code == 200 else f"HTTP {other.status_code}")
    result.figures = {
        "body limit MB": app.limits.max_body_bytes / MB,
        "upload quota MB": quota / MB,
        "accepted before quota MB": round(sent / MB),
    }
    return result


def check_remote_files(app: ServedApp) -> CheckResult:
    """Every spelling of the file routes: no URL fetched, nothing outside the examples and outputs served."""
    result = CheckResult("no fetching, any spelling")
    listener = Listener()
    local = f"127.0.0.1:{listener.port}/x.png"
    try:
        for spelling in (
            f"file=http://{local}",
            f"file/http://{local}",
            f"file/HTTPS://{local}",
            f"file%3Dhttp%3A//{local}",
            f"file/%68ttp://{local}",
            f"file/%2568ttp://{local}",
            f"proxy=http://{local}",
        ):
            answer = _http("GET", f"{app.url}{API}/{spelling}", timeout=10)
            # Refused by the app before Gradio's fetcher sees the URL: that fetcher refuses a loopback
            # address itself ("File not allowed"), but it would fetch any public one.
            result.record(
                f"/{spelling.replace(local, 'URL')} is refused before any fetch",
                None
                if answer.status == 403 and REFUSED_REMOTE_FILE in answer.text
                else f"HTTP {answer.status}: {answer.text[:60]!r}",
            )
        result.record(
            "the server connected to none of them",
            f"{listener.connections} connections" if listener.connections else None,
        )
    finally:
        listener.close()
    for what, path in {
        "/etc/passwd": "/etc/passwd",
        "app.py": str(ROOT / "app.py"),
        "examples/../../app.py": f"{EXAMPLES}/../../app.py",
    }.items():
        answer = _http("GET", f"{app.url}{API}/file/{path}", timeout=10)
        result.record(f"/file/ does not serve {what}", None if answer.status in (403, 404) else "served")
    example = _http("GET", f"{app.url}{API}/file/{EXAMPLES / 'portrait.png'}", timeout=10)
    result.record("/file/ still serves an example", None if example.status == 200 else "refused")
    return result


def check_maximal_run(app: ServedApp, steps: int = LONG_STEPS) -> CheckResult:
    """A 12-view gallery at `steps` steps, read frame by frame: peak RSS growth and what it leaves behind."""
    result = CheckResult(f"maximal run: 12 views x {steps} steps")
    client = app.client()
    time.sleep(1.0)
    before = app.rss_mb()
    reset = app.reset_peak()
    start = time.perf_counter()
    portrait = handle_file(str(EXAMPLES / "portrait.png"))
    job = client.submit(portrait, *GALLERY_12, steps, 2.0, 0, "ddim", api_name="/pose_gallery")
    try:
        outputs = job.result()
        status, views = outputs[4], outputs[5]  # preview, pose, notice, percent, status, views, zip
        problem = None if DONE.search(str(status)) and len(views) == 12 else f"ended {str(status)[:80]!r}"
    except Exception as error:  # a refusal, a broken connection: any of them fails the case
        problem = f"{type(error).__name__}: {str(error)[:100]}"
    frames = len(job.outputs())
    result.record("the gallery finishes with 12 views", problem, time.perf_counter() - start)
    peak = (app.peak_rss_mb() if reset else app.rss_mb()) - before
    time.sleep(2.0)
    left = app.rss_mb() - before
    result.record(
        f"peak RSS growth under {MAX_PEAK_GROWTH_MB:g} MB", None if peak < MAX_PEAK_GROWTH_MB else f"{peak:.0f} MB"
    )
    result.record(f"afterwards under {MAX_LEFT_MB:g} MB is left", None if left < MAX_LEFT_MB else f"{left:.0f} MB")
    result.figures = {"frames": frames, "peak growth MB": round(peak, 1), "left MB": round(left, 1)}
    return result


def check_ownership_and_routes(app: ServedApp) -> CheckResult:
    """Another session cannot cancel or read a run; /run/, deep links and monitoring are off."""
    result = CheckResult("ownership and closed routes")
    data = _try_off(app, 2)
    owner, owner_address = uuid.uuid4().hex, app.new_address()
    event_id = app.join("/try_off", data, owner, owner_address).json()["event_id"]
    fn_index = app.fn_index("/try_off")
    other = app.cancel(uuid.uuid4().hex, fn_index, event_id, app.new_address())
    result.record(
        "another session cannot cancel the run",
        None if other.status_code in (403, 404) else f"HTTP {other.status_code}: {other.text[:80]}",
    )
    stolen = _http("GET", f"{app.url}{API}/call/try_off/{event_id}", timeout=10)
    result.record(
        "nobody reads the run by its id alone",
        None if stolen.status in (403, 404) else f"HTTP {stolen.status}",
    )
    stream = _Stream(app, owner, owner_address)
    linked = _http("GET", f"{app.url}{API}/deep_link", params={"session_hash": owner}, timeout=10)
    stream.join(60.0)
    done = stream.completed(event_id)
    result.record(
        "the owner's run completes",
        None if done and done.get("success") else f"{done or 'no result'}"[:120],
    )
    result.record("deep links are off", None if linked.status == 404 else f"HTTP {linked.status}")
    written = list((app.upload_dir / "deep_links").glob("*/state.json"))
    result.record("no session state is written to a served file", f"{len(written)} written" if written else None)
    direct = _http("POST", f"{app.url}{API}/run/try_off", json={"data": data}, timeout=120)
    result.record(
        "a direct /run/ call is refused (every run waits its turn)",
        None if direct.status == 404 else f"HTTP {direct.status}",
    )
    for route in ("/monitoring", "/monitoring/summary"):
        answer = _http("GET", f"{app.url}{route}", timeout=10)
        result.record(f"{route} is off", None if answer.status == 404 else f"HTTP {answer.status}")
    return result


def check_log_lines(app: ServedApp) -> CheckResult:
    """Hostile requests that used to print tracebacks: a clear status and one log line each."""
    result = CheckResult("one log line per hostile request")
    log = _Log(app)
    unknown = _http("GET", f"{app.url}{API}/queue/data", params={"session_hash": "no-such-session"}, timeout=10)
    result.record(
        "a stream of an unknown session gets 404",
        None if unknown.status == 404 else f"HTTP {unknown.status}: {unknown.text[:60]!r}",
    )
    result.record(
        "it is one log line",
        None if len(log.since()) <= MAX_LOG_LINE_BYTES else f"the log grew {len(log.since())} bytes",
    )
    log = _Log(app)
    config = httpx.get(f"{app.url}/config", timeout=10).json()
    event = next(d["id"] for d in config["dependencies"] if d.get("backend_fn") and not d.get("queue"))
    not_queued = {"data": [None], "fn_index": event, "session_hash": "x", "event_data": None, "trigger_id": None}
    joined = _http("POST", f"{app.url}{API}/queue/join", json=not_queued, timeout=10)
    time.sleep(1.0)  # a run that was queued would have started and failed by now
    result.record(
        "joining an event that is not queued gets 404",
        None if joined.status == 404 else f"HTTP {joined.status}",
    )
    written = log.since()
    result.record(
        "... in one log line, no traceback",
        None if len(written) <= MAX_LOG_LINE_BYTES and "Traceback" not in written else f"{len(written)} bytes",
    )
    pose = call(app.client(), "/pose_preset", "walking", "left_elbow")
    result.record("the app still answers", None if pose.ok else pose.message[:100])
    return result


def hosting_checks(app: ServedApp, gallery_steps: int = LONG_STEPS) -> list[CheckResult]:
    """Every check above; the maximal gallery at `gallery_steps` steps (the suite's subset runs fewer)."""
    return [
        check_queue_share(app),
        check_request_sizes(app),
        check_remote_files(app),
        check_ownership_and_routes(app),
        check_log_lines(app),
        check_maximal_run(app, steps=gallery_steps),
    ]
