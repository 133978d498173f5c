"""The queue limits of a public app, added to Gradio's own queue: the one module that touches Gradio internals.

Why a subclass of `gradio.queueing.Queue` and not a setting: Gradio's queue
has one `max_size` for every event of the app and no notion of a client.
One client could fill all of it with runs it never reads (they wait, then
run, and their results stay in memory until the server stops), and a full
sampling queue turned away the Pose Studio's quick edits as well. Gradio
offers no hook for admission or scheduling, so `GuardedQueue` overrides
three of its methods:

- `push`: each concurrency id (the sampling runs, the Pose Studio) has its
  own size; one client (one IP address, and one session) holds at most
  `places_per_client` places in each, running included (HTTP 429 beyond);
  events that are not queued (`queue=False`) cannot be joined (404).
- `get_events`: a client's next run waits while another of its runs is
  running, so a client runs at most one job at a time.
- `start`: also starts the task that drops runs whose session never opened
  its result stream within `unread_grace_s` of joining (Gradio's own
  clean-up of a client that disconnected).

It also answers the guard middleware's questions (`omfa.app.hosting`):
which session a run belongs to, whether a session exists, and that a
session's stream was opened. `SUPPORTED_GRADIO` names the Gradio versions
this was written against; `install` refuses any other, and a test checks
the attributes it relies on, so an upgrade fails loudly, not silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import gradio as gr
from fastapi import HTTPException
from gradio import queueing
from gradio.utils import run_coro_in_background

if TYPE_CHECKING:  # hosting imports this module
    from omfa.app.hosting import HostingLimits

log = logging.getLogger("omfa.hosting")

SUPPORTED_GRADIO = ("6.31.",)  # prefixes of gradio.__version__ this module was checked against
POSE_CONCURRENCY_ID = "pose"  # omfa.app.pose_studio's events; every other queued event is a sampling run
_SWEEP_S = 1.0  # how often unread runs are looked for


class GuardedQueue(queueing.Queue):
    """Gradio's queue with per-queue sizes, per-client places, one running job per client, unread runs dropped.

    Build it with `install`, which replaces the queue `Blocks.queue()` made.
    """

    limits: HostingLimits

    def setup(self, limits: HostingLimits) -> None:
        self.limits = limits
        # session hash -> when its result stream was first opened; bounded like Gradio's own session cache
        self._read: OrderedDict[str, float] = OrderedDict()

    # -- admission ------------------------------------------------------------------------------

    def _size(self, concurrency_id: str) -> int:
        return self.limits.pose_queue_size if concurrency_id == POSE_CONCURRENCY_ID else self.limits.queue_size

    async def push(self, body: Any, request: Any, username: str | None) -> tuple[bool, Any, str]:
        """Gradio's `push` after this app's checks: a full queue is "queue_full" (HTTP 503), too many
        places held by one client is HTTP 429, an event that is not queued is HTTP 404."""
        if body.fn_index is None or body.fn_index not in self.blocks.fns:
            return await super().push(body, request, username)  # Gradio's own answer to a bad index
        fn = self.blocks.fns[body.fn_index]
        if not fn.queue:
            log.warning("refused to queue event %s, which does not run through the queue", body.fn_index)
            raise HTTPException(status_code=404, detail="This event does not run through the queue")
        concurrency_id = fn.concurrency_id
        event_queue = self.event_queue_per_concurrency_id.get(concurrency_id)
        waiting = len(event_queue.queue) if event_queue else 0
        if waiting >= self._size(concurrency_id):
            return False, f"Queue is full: {waiting} runs are waiting. Try again in a minute.", "queue_full"
        host = request.client.host if request.client else "unknown"
        held = sum(
            1
            for event in list(self.event_ids_to_events.values())
            if event.concurrency_id == concurrency_id
            and (event.session_hash == body.session_hash or _host(event) == host)
        )
        if held >= self.limits.places_per_client:
            log.warning("refused a run from %s: it holds %d places in the %s queue", host, held, concurrency_id)
            raise HTTPException(
                status_code=429,
                detail=f"You already have {held} runs queued or running; wait for one to finish",
            )
        return await super().push(body, request, username)

    # -- scheduling -----------------------------------------------------------------------------

    def get_events(self) -> tuple[list[queueing.Event], bool, str] | None:
        """Gradio's `get_events` (the first waiting event of a random concurrency id with a free worker), except
        that an event of a client with a running event of the same concurrency id waits its turn."""
        running = [event for job in self.active_jobs if job for event in job]
        concurrency_ids = list(self.event_queue_per_concurrency_id)
        random.shuffle(concurrency_ids)  # as Gradio does: no queue is always served first
        for concurrency_id in concurrency_ids:
            event_queue = self.event_queue_per_concurrency_id[concurrency_id]
            limit = event_queue.concurrency_limit
            if not event_queue.queue or (limit is not None and event_queue.current_concurrency >= limit):
                continue
            busy = frozenset().union(*(_client(e) for e in running if e.concurrency_id == concurrency_id))
            ready = [e for e in event_queue.queue if not _client(e) & busy]
            if not ready:
                continue
            first = ready[0]
            events = [first]
            if first.fn.batch:
                events += [e for e in ready[1:] if e.fn == first.fn][: first.fn.max_batch_size - 1]
            for event in events:
                event_queue.queue.remove(event)
            return events, first.fn.batch, concurrency_id
        return None

    # -- unread runs ----------------------------------------------------------------------------

    def start(self) -> None:
        super().start()
        run_coro_in_background(self._drop_unread)

    def mark_read(self, session_hash: str) -> None:
        """The session opened its result stream: its runs are read."""
        self._read.setdefault(session_hash, time.monotonic())
        self._read.move_to_end(session_hash)
        while len(self._read) > 10_000:
            self._read.popitem(last=False)

    async def _drop_unread(self) -> None:
        while not self.stopped:
            await asyncio.sleep(_SWEEP_S)
            now = time.monotonic()
            for event in list(self.event_ids_to_events.values()):
                if event.session_hash in self._read or now - event.enqueue_time < self.limits.unread_grace_s:
                    continue
                log.warning(
                    "dropped run %s of %s: its result stream was not opened within %g s",
                    event._id[:8],
                    _host(event),
                    self.limits.unread_grace_s,
                )
                await self.clean_events(event_id=event._id)
                self.event_ids_to_events.pop(event._id, None)
                self.pending_event_ids_session.get(event.session_hash, set()).discard(event._id)

    # -- questions of the guard middleware ------------------------------------------------------

    def knows_session(self, session_hash: str) -> bool:
        """The session has joined a run whose messages can still be read."""
        return session_hash in self.pending_messages_per_session

    def session_of(self, event_id: str) -> str | None:
        """The session that joined the run `event_id` (while it waits, runs or its result is unread), else None."""
        event = self.event_ids_to_events.get(event_id)
        if event is not None:
            return event.session_hash
        for session, ids in list(self.pending_event_ids_session.items()):
            if event_id in ids:
                return session
        return None


def _host(event: queueing.Event) -> str:
    client = getattr(event.request, "client", None)
    return client.host if client else "unknown"


def _client(event: queueing.Event) -> frozenset[str]:
    """The keys that tell one client: its session and its IP address."""
    return frozenset((f"session:{event.session_hash}", f"host:{_host(event)}"))


def install(demo: gr.Blocks, limits: HostingLimits) -> GuardedQueue:
    """Turn the queue of `demo` (after `demo.queue(...)`) into a GuardedQueue with `limits`.

    Gradio's own `max_size` is switched off: each concurrency id gets its size here.
    Raises RuntimeError on a Gradio version this module was not checked against."""
    if not gr.__version__.startswith(SUPPORTED_GRADIO):
        raise RuntimeError(
            f"omfa.app.gradio_queue was written for Gradio {SUPPORTED_GRADIO}, not {gr.__version__}: "
            "check Queue.push, get_events, start and clean_events, then add the version"
        )
    queue = demo._queue
    queue.__class__ = GuardedQueue  # keeps everything Blocks.queue() set up; adds the methods above
    queue.max_size = None
    queue.setup(limits)
    return queue


def served_queue(scope: dict) -> GuardedQueue | None:
    """The GuardedQueue of the Gradio app serving an ASGI request, or None (another app, no guarded queue)."""
    app = scope.get("app")
    blocks = app.get_blocks() if hasattr(app, "get_blocks") else None
    queue = getattr(blocks, "_queue", None)
    return queue if isinstance(queue, GuardedQueue) else None
