"""sluice: large batches of HTTP API calls, fast and politely, without losing a result.

An asyncio client over the sluice engine (Rust): exact concurrency and rate
limits, retries that honour ``Retry-After``, one result per request, flat
memory, and the CLI's crash-safe, resumable file job::

    import sluice

    async with sluice.Client(concurrency=15, rate="600/m", retries=3) as client:
        async for result in client.stream(requests):
            print(result.id, result.status, result.json())

Options are the CLI's long options with underscores (``sluice run --help``).
The requests are read lazily; results arrive as they finish (``ordered=True``
for input order). The GIL is released while requests are in flight: no
Python code runs on the engine's hot path.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import collections
import json as _json
import os
import threading
import weakref
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any, Coroutine, Deque, Dict, List, Optional, Tuple, TypeVar, Union

from . import _sluice
from ._sluice import UsageError

__all__ = [
    "AdaptiveLimit",
    "Client",
    "Error",
    "Latency",
    "LearnedLimits",
    "MockServer",
    "OriginClosed",
    "Result",
    "RetryBudget",
    "Stream",
    "Summary",
    "TokenLimit",
    "UsageError",
    "run",
    "run_file",
]

__version__: str = _sluice.__version__

# Before the interpreter finalizes, no engine thread may still be handing a
# result to Python: this stops and waits for them.
atexit.register(_sluice.shutdown)

#: A request: a URL string (a GET), or a dict with the keys of a JSON request
#: line (``url``, ``id``, ``method``, ``headers``, ``body``, ...: ``sluice help input``).
Request = Union[str, Mapping[str, Any]]
#: Where requests come from: any iterable or async iterable of requests.
Requests = Union[Iterable[Request], AsyncIterable[Request]]
PathLike = Union[str, "os.PathLike[str]"]

# Items handed to the engine at once from a (sync) iterable, and results
# taken back at once: each call crosses into the extension, so both sides
# move batches.
_FEED_BATCH = 256
_TAKE_BATCH = 1024

_dumps = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


#: How long closing a client waits for its run's last events, in seconds.
_CLOSE_WAIT = 5.0


class OriginClosed(RuntimeError):
    """Raised at the end of a stream when requests got no result because
    their origin was closed (``halt_after`` consecutive hard failures such
    as 401 or refused connections, or a ``Retry-After`` longer than
    ``max_retry_after``), as the CLI stops with exit status 3. The message
    says how many and why; the results before it were all handed out
    (``sluice.run`` puts them in ``results``, so none is lost)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        #: From ``sluice.run``: the results the stream handed out before.
        self.results: List["Result"] = []


class Error:
    """Why a request failed: ``kind`` is one of the documented error kinds
    (``http_status``, ``timeout``, ``connect``, ``invalid_request``, ...)."""

    __slots__ = ("kind", "message", "maybe_applied")

    def __init__(self, kind: str, message: str, maybe_applied: bool = False) -> None:
        self.kind = kind
        self.message = message
        self.maybe_applied = maybe_applied

    def __repr__(self) -> str:
        return f"Error(kind={self.kind!r}, message={self.message!r})"

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class Result:
    """One request's result: every field of the CLI's result record
    (``sluice help output``), with ``.json()`` and ``.text`` for the body.

    ``record`` is the record itself, as the CLI writes it (parsed from its
    JSON line on first use)."""

    __slots__ = ("_line", "_ok", "_record")

    def __init__(self, line: str, ok: bool) -> None:
        self._line = line
        self._ok = ok
        self._record: Optional[Dict[str, Any]] = None

    @property
    def record(self) -> Dict[str, Any]:
        if self._record is None:
            self._record = _json.loads(self._line)
        return self._record

    @property
    def id(self) -> Union[str, int]:
        """The request's ``id`` (or ``custom_id``), else its position (1-based)."""
        value: Union[str, int] = self.record["id"]
        return value

    @property
    def line(self) -> int:
        """The request's position in its input (1-based)."""
        return int(self.record["line"])

    @property
    def method(self) -> Optional[str]:
        return self.record.get("method")

    @property
    def url(self) -> Optional[str]:
        """The URL sent (secrets redacted)."""
        return self.record.get("url")

    @property
    def ok(self) -> bool:
        """True for a final 2xx response."""
        return self._ok

    @property
    def status(self) -> Optional[int]:
        return self.record.get("status")

    @property
    def attempts(self) -> int:
        return int(self.record["attempts"])

    @property
    def duration_ms(self) -> float:
        """From the first attempt's start to the final outcome."""
        return float(self.record.get("duration_ms", 0.0))

    @property
    def started_at(self) -> Optional[str]:
        return self.record.get("started_at")

    @property
    def error(self) -> Optional[Error]:
        e = self.record.get("error")
        if e is None:
            return None
        return Error(e["kind"], e["message"], bool(e.get("maybe_applied", False)))

    @property
    def maybe_applied(self) -> bool:
        """A non-idempotent request failed after it was sent: the server may have acted on it."""
        e = self.record.get("error")
        return bool(e and e.get("maybe_applied", False))

    @property
    def final_url(self) -> Optional[str]:
        """The URL of the last response when redirects were followed, else None."""
        return self.record.get("final_url")

    @property
    def http_version(self) -> Optional[str]:
        """The HTTP version of the final response (``HTTP/1.1``, ``HTTP/2``), when there was one."""
        return self.record.get("http_version")

    @property
    def tls_version(self) -> Optional[str]:
        """The TLS version of the final response's connection, over https."""
        return self.record.get("tls_version")

    @property
    def queued_at(self) -> Optional[str]:
        """When the request was taken from the input (RFC 3339)."""
        return self.record.get("queued_at")

    @property
    def wait_ms(self) -> Optional[Dict[str, float]]:
        """Where the request waited before and between attempts: ``queue``, ``rate``, ``retry``."""
        w = self.record.get("wait_ms")
        return dict(w) if w is not None else None

    @property
    def attempt_log(self) -> Optional[List[Dict[str, Any]]]:
        """Each attempt: its start and duration, and how it failed when it did."""
        log = self.record.get("attempt_log")
        return list(log) if log is not None else None

    @property
    def headers(self) -> Optional[Dict[str, str]]:
        """Response headers (``include_headers=True``), lower-case names, secrets redacted."""
        h = self.record.get("headers")
        return dict(h) if h is not None else None

    @property
    def body(self) -> Any:
        """The body as the record stores it (see ``body_encoding``)."""
        return self.record.get("body")

    @property
    def body_encoding(self) -> Optional[str]:
        """``json``, ``text``, ``base64``, or None (no body)."""
        return self.record.get("body_encoding")

    @property
    def content(self) -> bytes:
        """The body's bytes (JSON bodies as compact JSON)."""
        enc, body = self.body_encoding, self.body
        if body is None:
            return b""
        if enc == "base64":
            return base64.b64decode(body)
        if enc == "json":
            return _dumps(body).encode()
        return str(body).encode()

    @property
    def text(self) -> str:
        """The body as text (JSON bodies as compact JSON; bytes that are not UTF-8 replaced)."""
        enc, body = self.body_encoding, self.body
        if body is None:
            return ""
        if enc == "text":
            return str(body)
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        if self.body_encoding == "json":
            return self.body
        return _json.loads(self.text)

    def __repr__(self) -> str:
        what = f"status={self.status}" if self.status is not None else f"error={self.record.get('error', {}).get('kind')!r}"
        return f"<Result id={self.id!r} ok={self.ok} {what} attempts={self.attempts}>"


class Latency:
    """Latency percentiles in milliseconds over requests that were sent."""

    __slots__ = ("p50_ms", "p90_ms", "p99_ms", "max_ms")

    def __init__(self, p50_ms: float, p90_ms: float, p99_ms: float, max_ms: float) -> None:
        self.p50_ms = p50_ms
        self.p90_ms = p90_ms
        self.p99_ms = p99_ms
        self.max_ms = max_ms

    def __repr__(self) -> str:
        return f"Latency(p50_ms={self.p50_ms}, p90_ms={self.p90_ms}, p99_ms={self.p99_ms}, max_ms={self.max_ms})"


class TokenLimit:
    """One token limit an origin was paced at: ``dimension`` is ``tokens``,
    ``input-tokens`` or ``output-tokens``."""

    __slots__ = ("dimension", "per_second", "burst")

    def __init__(self, dimension: str, per_second: float, burst: int) -> None:
        self.dimension = dimension
        self.per_second = per_second
        self.burst = burst

    def __repr__(self) -> str:
        return f"TokenLimit(dimension={self.dimension!r}, per_second={self.per_second}, burst={self.burst})"


class LearnedLimits:
    """What sluice learned about one origin's limits (``learn_limits``):
    the dialect of its rate-limit headers (``none``: a rate discovered from
    its 429s and 503s), the request rate and burst it was paced at
    (``requests_per_second`` None when the headers never said enough), the
    token limits (``tokens``, empty when its headers limit none), how long
    its requests waited for them, and the 429s they did not predict."""

    __slots__ = ("origin", "dialect", "requests_per_second", "burst", "tokens", "paced_seconds", "refused")

    def __init__(
        self,
        origin: str,
        dialect: str,
        requests_per_second: Optional[float],
        burst: int,
        paced_seconds: float,
        refused: int,
        tokens: Optional[List[Dict[str, Any]]] = None,
    ) -> None:
        self.origin = origin
        self.dialect = dialect
        self.requests_per_second = requests_per_second
        self.burst = burst
        self.tokens: List[TokenLimit] = [TokenLimit(**t) for t in tokens or []]
        self.paced_seconds = paced_seconds
        self.refused = refused

    def __repr__(self) -> str:
        return (
            f"LearnedLimits(origin={self.origin!r}, dialect={self.dialect!r}, "
            f"requests_per_second={self.requests_per_second}, burst={self.burst}, "
            f"paced_seconds={self.paced_seconds:.3f}, refused={self.refused})"
        )


class AdaptiveLimit:
    """The concurrency limit under ``adaptive=True``: at the end (``limit``),
    its mean over the run (weighted by time), the lowest and highest it
    was, and how many times it was lowered."""

    __slots__ = ("limit", "mean", "lowest", "highest", "decreases")

    def __init__(self, limit: int, mean: float, lowest: int, highest: int, decreases: int) -> None:
        self.limit = limit
        self.mean = mean
        self.lowest = lowest
        self.highest = highest
        self.decreases = decreases

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimit(limit={self.limit}, mean={self.mean:.1f}, lowest={self.lowest}, "
            f"highest={self.highest}, decreases={self.decreases})"
        )


class RetryBudget:
    """How long retries waited for the retry budget (``retry_budget``), in
    all, and how many had to wait."""

    __slots__ = ("waited_seconds", "retries_held")

    def __init__(self, waited_seconds: float, retries_held: int) -> None:
        self.waited_seconds = waited_seconds
        self.retries_held = retries_held

    def __repr__(self) -> str:
        return f"RetryBudget(waited_seconds={self.waited_seconds:.3f}, retries_held={self.retries_held})"


class Summary:
    """Counts, retries and latency of a run, with the names of the CLI's
    ``--summary-json``. After ``resume=True`` the counts cover the whole
    output file; ``sent_this_run`` is this run's share."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.data = data
        self.records: int = data["records"]
        self.ok: int = data["ok"]
        self.failed: int = data["failed"]
        self.sent_this_run: int = data["sent_this_run"]
        self.resumed: bool = data["resumed"]
        self.by_status: Dict[int, int] = {int(k): v for k, v in data["by_status"].items()}
        self.by_error: Dict[str, int] = dict(data["by_error"])
        self.attempts: int = data["attempts"]
        self.retries: int = data["retries"]
        self.wall_seconds: float = data["wall_seconds"]
        self.requests_per_second: float = data["requests_per_second"]
        lat = data.get("latency")
        self.latency: Optional[Latency] = Latency(**lat) if lat else None
        self.closed_origins: List[str] = list(data["closed_origins"])
        self.not_written: int = data["not_written"]
        self.not_written_exact: bool = data["not_written_exact"]
        self.stopped: Optional[str] = data["stopped"]
        self.interrupted: bool = data["interrupted"]
        #: Per origin that said something about its limits (``learn_limits``).
        self.learned: List[LearnedLimits] = [LearnedLimits(**item) for item in data.get("learned", [])]
        #: Under ``adaptive=True``: the concurrency limit (None otherwise).
        adaptive = data.get("adaptive")
        self.adaptive: Optional[AdaptiveLimit] = AdaptiveLimit(**adaptive) if adaptive else None
        #: Under a retry budget, once the run has ended: how long retries
        #: waited for it (None with ``retry_budget="off"``, or while a
        #: client is still open).
        budget = data.get("retry_budget")
        self.retry_budget: Optional[RetryBudget] = RetryBudget(**budget) if budget else None

    def __repr__(self) -> str:
        return (
            f"<Summary records={self.records} ok={self.ok} failed={self.failed} "
            f"retries={self.retries} wall_seconds={self.wall_seconds:.3f}>"
        )


def _encode(item: Any, lines: List[Optional[str]], bad: List[Any]) -> None:
    """One request → its input line, or the reason it is not one (it gets an
    ``invalid_request`` result, as a bad line does in the CLI)."""
    if isinstance(item, str):
        lines.append(item)
        return
    if isinstance(item, Mapping):
        try:
            lines.append(_dumps(item))
            return
        except (TypeError, ValueError) as e:
            why = f"the request dict cannot be written as JSON: {e}"
    else:
        why = f"a request is a dict or a URL string, not {type(item).__name__}"
    bad.append((len(lines), why))
    lines.append(None)


#: Private switch (tests): wait on the client's doorbell thread even where
#: the loop could watch the bell's socket.
_FORCE_DOORBELL = False


class _Bell:
    """Waits for a batch's bell, rung by the engine when results are ready,
    room for input is free, or the run ended. Where the running loop can
    watch a file (``loop.add_reader``: Unix selector loops, uvloop), the
    bell is a socket it watches; where it cannot (Windows' Proactor loop,
    any loop whose ``add_reader`` raises NotImplementedError), the client's
    doorbell thread passes the rings on with ``call_soon_threadsafe``. It
    holds no reference to its Stream, so a stream left by ``break`` is
    still collected (and then cancelled)."""

    __slots__ = ("_batch", "_loop", "_waiters", "_doorbell", "_fd", "__weakref__")

    def __init__(self, batch: _sluice.Batch, doorbell: "_DoorbellWatcher") -> None:
        self._batch = batch
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._waiters: List[asyncio.Future[None]] = []
        self._doorbell = doorbell
        self._fd: Optional[int] = None

    async def wait(self) -> None:
        """Until the bell rings (the caller looks again: it may ring early)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._listen(loop)
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        await fut

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        fd = self._batch.fileno()
        if fd is not None and not _FORCE_DOORBELL:
            try:
                loop.add_reader(fd, self._rang)
                self._fd = fd
                self._loop = loop
                return
            except NotImplementedError:
                pass
        # Watched before the switch: a ring the switch passes on (or a
        # fresh one) must find this bell registered, or it is dropped and,
        # rung once per want, never comes again.
        self._loop = loop
        self._doorbell.watch(self._batch.bell_id(), self)
        self._batch.use_doorbell()

    def _rang(self) -> None:
        if self._fd is not None:
            self._batch.hush()
        # The futures are resolved, not cancelled: a cancelled one would
        # cancel the task awaiting it.
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _rang_elsewhere(self) -> None:
        """From the doorbell thread: the loop runs ``_rang``."""
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._rang)
            except RuntimeError:  # the loop is closed: nobody waits
                pass

    def close(self) -> None:
        loop, self._loop = self._loop, None
        fd, self._fd = self._fd, None
        if fd is not None and loop is not None and not loop.is_closed():
            try:
                loop.remove_reader(fd)
            except Exception:  # the loop is shutting down
                pass
        elif loop is not None:
            self._doorbell.forget(self._batch.bell_id())
        # Whoever still waits looks again (and finds the run over).
        self._rang()


class _DoorbellWatcher:
    """One thread per client, started when one of its bells cannot be a
    watched socket: it waits on the client's doorbell (the GIL released)
    and passes each ring to its bell's loop. It ends when the client's run
    is over or the client is gone, and at interpreter exit."""

    def __init__(self, engine: _sluice.Engine) -> None:
        self._doorbell = engine.doorbell()
        self._bells: "weakref.WeakValueDictionary[int, _Bell]" = weakref.WeakValueDictionary()
        self._thread: Optional[threading.Thread] = None

    def watch(self, bell_id: int, bell: _Bell) -> None:
        self._bells[bell_id] = bell
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=_watch_doorbell, args=(self._doorbell, self._bells), name="sluice-doorbell", daemon=True
            )
            self._thread.start()
            _doorbell_threads.add(self._thread)
            _doorbells.add(self._doorbell)

    def forget(self, bell_id: int) -> None:
        self._bells.pop(bell_id, None)


def _watch_doorbell(doorbell: _sluice.Doorbell, bells: "weakref.WeakValueDictionary[int, _Bell]") -> None:
    while True:
        rung = doorbell.wait(0.5)
        if rung is None:
            return
        for bell_id in rung:
            bell = bells.get(bell_id)
            if bell is not None:
                bell._rang_elsewhere()


# Every doorbell thread ends before the interpreter finalizes (a thread
# coming back from Rust into a finalizing interpreter is not safe).
_doorbells: "weakref.WeakSet[_sluice.Doorbell]" = weakref.WeakSet()
_doorbell_threads: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()


def _stop_doorbells() -> None:
    for doorbell in list(_doorbells):
        doorbell.close()
    for thread in list(_doorbell_threads):
        thread.join(timeout=1.0)


atexit.register(_stop_doorbells)  # runs before _sluice.shutdown (registered first)


async def _offer(batch: _sluice.Batch, bell: _Bell, lines: List[Optional[str]], bad: List[Any]) -> bool:
    """Hands a batch of items over, waiting for room; False once the run
    takes no more input."""
    while True:
        taken = batch.offer(lines, bad)
        if taken is None:
            return False
        if taken:
            return True
        await bell.wait()


async def _feed(batch: _sluice.Batch, bell: _Bell, requests: Requests) -> None:
    """Hands the requests to the engine, lazily: it takes more only as it
    has room, so a generator of millions runs in flat memory. When the
    iterable fails, the requests read before still go, then its error is
    raised (by the stream, after their results)."""
    lines: List[Optional[str]] = []
    bad: List[Any] = []
    try:
        if isinstance(requests, AsyncIterable):
            # An async source may be slow: every request goes in at once.
            async for item in requests:
                _encode(item, lines, bad)
                if not await _offer(batch, bell, lines, bad):
                    return
                lines, bad = [], []
        else:
            for item in requests:
                _encode(item, lines, bad)
                if len(lines) >= _FEED_BATCH:
                    if not await _offer(batch, bell, lines, bad):
                        return
                    lines, bad = [], []
    except Exception:
        if lines:
            await _offer(batch, bell, lines, bad)
        raise
    else:
        if lines:
            await _offer(batch, bell, lines, bad)
    finally:
        batch.close_input()


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class Stream:
    """Results as they finish (an async iterator). Leaving it early
    (``break``, an exception, cancellation, ``aclose()``) cancels the
    requests still in flight and sends no more."""

    def __init__(self, requests: Requests, batch: _sluice.Batch, doorbell: _DoorbellWatcher) -> None:
        self._batch = batch
        self._bell = _Bell(self._batch, doorbell)
        self._requests: Optional[Requests] = requests
        self._feeder: Optional[asyncio.Task[None]] = None
        self._ready: Deque[Tuple[str, bool]] = collections.deque()
        self._done = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Result:
        if self._ready:
            return Result(*self._ready.popleft())
        if self._done:
            raise StopAsyncIteration
        if self._feeder is None and self._requests is not None:
            self._feeder = asyncio.ensure_future(_feed(self._batch, self._bell, self._requests))
            # A stream left early never awaits it: its error must not be
            # reported as "never retrieved".
            self._feeder.add_done_callback(_retrieve)
            self._requests = None
        try:
            while True:
                lines = self._batch.take(_TAKE_BATCH)
                if lines is None or lines:
                    break
                await self._bell.wait()
        except BaseException:
            self._cancel()
            raise
        if lines is None:
            self._done = True
            self._bell.close()
            await self._settle_feeder()
            lost = self._batch.incomplete()
            if lost is not None:
                raise OriginClosed(lost)
            raise StopAsyncIteration
        self._ready.extend(lines)
        return Result(*self._ready.popleft())

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancels what is in flight and waits until the input side has stopped."""
        self._cancel()
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            try:
                await feeder
            except asyncio.CancelledError:
                pass
            except Exception:
                pass  # The iterable's own error: the caller chose to stop.

    def summary(self) -> Summary:
        """Counts and latency of the results handed out so far."""
        return Summary(_json.loads(self._batch.summary()))

    def _cancel(self) -> None:
        self._done = True
        self._ready.clear()
        self._batch.cancel()
        self._bell.close()
        if self._feeder is not None and not self._feeder.done():
            self._feeder.cancel()

    async def _settle_feeder(self) -> None:
        """Once every result is out: the requests' own error, if reading them failed."""
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            await feeder

    def __del__(self) -> None:
        # `break` out of `async for`: nothing else will stop the run.
        if not self._done:
            try:
                self._cancel()
            except Exception:
                pass


class Client:
    """A client with the CLI's options (``concurrency=15, rate="600/m",
    retries=3, base_url=..., headers={...}``, ...). A bad option raises
    ValueError with the CLI's message; an unknown one TypeError.

    One client is one set of limits: its streams and requests, however
    many run at once, share ``concurrency``, ``rate``, ``per_host_rate``,
    ``budget``, origin pauses and learned limits (one engine run serves
    them all). Leaving ``async with`` cancels every stream still running."""

    def __init__(self, **options: Any) -> None:
        _sluice.check_options(options)
        self._options = options
        self._engine: Optional[_sluice.Engine] = None
        self._doorbell: Optional[_DoorbellWatcher] = None
        self._streams: weakref.WeakSet[Stream] = weakref.WeakSet()
        self._closed = False

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancels every stream still running; the client cannot be used after."""
        self._closed = True
        for stream in list(self._streams):
            await stream.aclose()
        if self._engine is not None:
            self._engine.close()
            # Every stream has stopped, so the run ends within moments; its
            # last events (the adaptive limit's account, the retry budget's
            # waits) then reach the summaries. Bounded, never a hang.
            deadline = asyncio.get_running_loop().time() + _CLOSE_WAIT
            while not self._engine.ended() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.001)

    def stream(self, requests: Requests, *, ordered: Optional[bool] = None) -> Stream:
        """Sends the requests with the client's limits; an async iterator of
        results as they finish, or in input order with ``ordered=True``."""
        if self._closed:
            raise RuntimeError("this sluice.Client is closed")
        if isinstance(requests, (str, bytes, Mapping)):
            raise TypeError("stream() takes an iterable of requests; wrap a single one in a list")
        if self._engine is None:
            self._engine = _sluice.Engine(self._options)
            self._doorbell = _DoorbellWatcher(self._engine)
        assert self._doorbell is not None
        s = Stream(requests, self._engine.lane(ordered), self._doorbell)
        self._streams.add(s)
        return s

    async def request(self, request: Request) -> Result:
        """Sends one request (retried as the options say) and returns its result."""
        s = self.stream([request])
        try:
            async for result in s:
                return result
        finally:
            await s.aclose()
        raise RuntimeError("sluice: the request got no result (a bug: please report it)")


def run(requests: Requests, **options: Any) -> List[Result]:
    """Sends the requests and returns every result (completion order, or
    input order with ``ordered=True``): for scripts and notebooks. Works
    inside a running event loop too (it then runs in a thread of its own)."""
    _sluice.check_options(options)

    async def collect() -> List[Result]:
        got: List[Result] = []
        try:
            async with Client(**options) as client:
                async for r in client.stream(requests):
                    got.append(r)
        except OriginClosed as e:
            e.results = got
            raise
        return got

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(collect())
    box: List[Any] = []

    def in_thread() -> None:
        try:
            box.append(asyncio.run(collect()))
        except BaseException as e:  # re-raised in the caller's thread
            box.append(e)

    t = threading.Thread(target=in_thread, name="sluice.run")
    t.start()
    t.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    results: List[Result] = box[0]
    return results


def run_file(
    inputs: Union[PathLike, List[PathLike]],
    output: Optional[PathLike] = None,
    *,
    resume: bool = False,
    shard: Optional[str] = None,
    redis: Optional[str] = None,
    job: Optional[str] = None,
    redis_timeout: Union[str, float, None] = None,
    **options: Any,
) -> Summary:
    """The CLI's crash-safe file job (``sluice run INPUT -o OUTPUT [--resume]``):
    one result line per input line, streamed to ``output`` so a crash loses
    nothing that finished; ``resume=True`` continues where it stopped.

    Across machines, as the CLI's ``--shard``, ``--redis``, ``--job`` and
    ``--redis-timeout``: ``shard="K/N"`` takes the lines whose number modulo
    N is K (records keep their global line numbers; give each shard its own
    ``output``); ``redis="redis://HOST:PORT"`` with ``job="NAME"`` shares
    the rate, budget, per-host rate, pauses and closed origins with every
    process of the job; ``redis_timeout`` (default 5 minutes) is how long
    Redis may be unreachable before the job stops, resumable.

    Raises UsageError (a ValueError) when nothing could be sent (a bad
    option, input or output: the CLI's exit status 2). Ctrl-C drains as in
    the CLI: in-flight requests finish and are written, then
    KeyboardInterrupt is raised; a second Ctrl-C abandons them."""
    options["output"] = output
    options["resume"] = resume
    options.update(shard=shard, redis=redis, job=job, redis_timeout=redis_timeout)
    if isinstance(inputs, (list, tuple)):
        paths: Any = [os.fspath(p) for p in inputs]
    else:
        paths = os.fspath(inputs)
    return Summary(_json.loads(_sluice.run_file(paths, options)))


class MockServer:
    """The test upstream (``sluice mock``) on 127.0.0.1, for testing code
    offline: ``async with sluice.MockServer() as mock:`` (or ``with``);
    ``mock.url`` is its base URL, ``mock.stats()`` what it saw. Its
    endpoints: ``GET {mock.url}/``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        h2_max_streams: Optional[int] = None,
        goaway_after: Optional[int] = None,
        keep_alive: Optional[float] = None,
    ) -> None:
        self._args = (host, port, h2_max_streams, goaway_after, keep_alive)
        self._mock: Optional[_sluice.Mock] = None

    async def start(self) -> MockServer:
        self._mock = await _sluice.start_mock(*self._args)
        return self

    async def aclose(self) -> None:
        mock, self._mock = self._mock, None
        if mock is not None:
            await mock.shutdown()

    async def __aenter__(self) -> MockServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> MockServer:
        return _run_sync(self.start())

    def __exit__(self, *exc: object) -> None:
        _run_sync(self.aclose())

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``, without a trailing slash."""
        return self._server().url

    def stats(self) -> Dict[str, Any]:
        """What the server saw (``GET /stats``): requests, peak in flight, per path, ..."""
        data: Dict[str, Any] = _json.loads(self._server().stats())
        return data

    def reset_stats(self) -> None:
        """Clears the statistics and the ``/fail`` and ``/ratelimit`` state."""
        self._server().reset_stats()

    def _server(self) -> _sluice.Mock:
        if self._mock is None:
            raise RuntimeError("the MockServer is not running: use `async with sluice.MockServer() as mock:`")
        return self._mock


_T = TypeVar("_T")


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Runs a coroutine to the end from synchronous code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError("inside a running event loop, use `async with` instead")
