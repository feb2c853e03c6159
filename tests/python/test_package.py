"""The Python package (python/sluice over crates/sluice-py) against its own
test upstream, sluice.MockServer: limits and cancellation are counted at the
server (its /stats), never inferred from the client side."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List

import pytest
import pytest_asyncio

import sluice

ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture
async def mock() -> AsyncIterator[sluice.MockServer]:
    async with sluice.MockServer() as server:
        yield server


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Polls until `predicate()` holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def no_other_tasks() -> None:
    """Nothing sluice started is left pending (cancelled tasks get a few
    loop turns to finish)."""
    me = asyncio.current_task()
    for _ in range(50):
        if not [t for t in asyncio.all_tasks() if t is not me]:
            return
        await asyncio.sleep(0.01)
    assert [t for t in asyncio.all_tasks() if t is not me] == []


# ---- limits, counted at the server -------------------------------------


@pytest.mark.asyncio
async def test_peak_in_flight_is_exactly_the_concurrency(mock: sluice.MockServer) -> None:
    async with sluice.Client(concurrency=7) as client:
        results = [r async for r in client.stream(f"{mock.url}/delay/0.1" for _ in range(50))]
    assert len(results) == 50
    assert all(r.ok and r.status == 200 and r.attempts == 1 for r in results)
    assert sorted(r.line for r in results) == list(range(1, 51))
    stats = mock.stats()
    assert stats["requests"] == 50
    assert stats["peak_in_flight"] == 7


@pytest.mark.asyncio
async def test_rate_never_exceeds_rate_times_window_plus_burst(mock: sluice.MockServer) -> None:
    async with sluice.Client(rate="40/s", concurrency=50) as client:
        results = [r async for r in client.stream([f"{mock.url}/fast"] * 20)]
    assert len(results) == 20 and all(r.ok for r in results)
    arrivals = sorted(a["ms"] for a in mock.stats()["arrivals"])
    assert len(arrivals) == 20
    # 20 starts at 40/s with burst 1 take at least 19/40 s.
    assert arrivals[-1] - arrivals[0] >= 19 / 40 * 1000 * 0.97
    for i, start in enumerate(arrivals):
        in_window = sum(1 for t in arrivals[i:] if t - start < 250)
        assert in_window <= 40 * 0.25 + 1


@pytest.mark.asyncio
async def test_per_host_concurrency_and_headers(mock: sluice.MockServer) -> None:
    async with sluice.Client(
        concurrency=10, per_host_concurrency=3, base_url=mock.url, headers={"X-Team": "blue"}
    ) as client:
        results = [r async for r in client.stream(["/delay/0.1"] * 12 + ["/echo"])]
    assert mock.stats()["peak_in_flight"] == 3
    echo = next(r for r in results if r.url and r.url.endswith("/echo"))
    assert echo.json()["headers"]["x-team"] == "blue"


# ---- one client, one set of limits --------------------------------------


def most_in_window(arrivals_ms: List[float], window_ms: float) -> int:
    """The most arrivals in any window [t, t + window_ms)."""
    times = sorted(arrivals_ms)
    return max((sum(1 for u in times[i:] if u - t < window_ms) for i, t in enumerate(times)), default=0)


@pytest.mark.asyncio
async def test_streams_and_requests_of_one_client_share_its_limits(mock: sluice.MockServer) -> None:
    # Two streams and 20 request() calls at once on one client: together
    # never more than 5 in flight, nor more than 20 starts in any second
    # (rate + burst), counted at the server.
    async with sluice.Client(concurrency=5, rate="20/s", base_url=mock.url, retries=0) as client:

        async def drain(paths: List[str]) -> List[sluice.Result]:
            return [r async for r in client.stream(paths)]

        fast = asyncio.ensure_future(drain(["/fast"] * 12))
        slow = asyncio.ensure_future(drain(["/delay/0.4"] * 12))
        singles = [client.request("/delay/0.4") for _ in range(20)]
        results = await asyncio.gather(fast, slow, *singles)
    streams, requests = results[:2], results[2:]
    assert [len(s) for s in streams] == [12, 12]  # type: ignore[arg-type]
    assert all(r.ok for s in streams for r in s)  # type: ignore[attr-defined]
    assert all(r.ok for r in requests)  # type: ignore[union-attr]
    stats = mock.stats()
    assert stats["requests"] == 44
    assert stats["peak_in_flight"] == 5
    arrivals = [a["ms"] for a in stats["arrivals"]]
    assert most_in_window(arrivals, 1000) <= 20 + 1
    # 44 starts at 20/s (burst 1) take at least 43/20 s.
    assert max(arrivals) - min(arrivals) >= 43 / 20 * 1000 * 0.97


@pytest.mark.asyncio
async def test_cancelling_one_stream_leaves_the_other_alone(mock: sluice.MockServer) -> None:
    async with sluice.Client(concurrency=4, base_url=mock.url) as client:
        hog = client.stream(["/delay/30"] * 10)
        hog_task = asyncio.ensure_future(hog.__anext__())
        await wait_for(lambda: mock.stats()["in_flight"] == 4)
        other = asyncio.ensure_future(asyncio.gather(*[client.request("/delay/0.1") for _ in range(6)]))
        await asyncio.sleep(0.2)
        hog_task.cancel()
        await hog.aclose()
        # The cancelled stream's requests end at the server at once, and
        # the freed slots go to the other requests, which all succeed.
        await wait_for(lambda: mock.stats()["paths"]["/delay/30"]["in_flight"] == 0, timeout=3)
        done = await asyncio.wait_for(other, timeout=10)
        assert [r.ok for r in done] == [True] * 6
        assert mock.stats()["paths"]["/delay/30"]["requests"] == 4
        # The client still works after one of its streams was cancelled.
        assert [r.ok async for r in client.stream(["/fast"] * 3)] == [True] * 3
    await no_other_tasks()


@pytest.mark.asyncio
async def test_ids_are_unique_per_stream_not_per_client(mock: sluice.MockServer) -> None:
    async with sluice.Client(base_url=mock.url) as client:
        a, b = await asyncio.gather(
            client.request({"url": "/fast", "id": "same"}), client.request({"url": "/fast", "id": "same"})
        )
        both = [r async for r in client.stream([{"url": "/fast", "id": "x"}, {"url": "/fast", "id": "x"}], ordered=True)]
    assert (a.ok, a.id, a.line) == (True, "same", 1) and (b.ok, b.id, b.line) == (True, "same", 1)
    assert [r.error.kind if r.error else None for r in both] == [None, "duplicate_id"]
    assert [r.line for r in both] == [1, 2]


# ---- retries -----------------------------------------------------------


@pytest.mark.asyncio
async def test_retry_after_is_honoured(mock: sluice.MockServer) -> None:
    async with sluice.Client(base_url=mock.url, backoff_initial="10ms") as client:
        started = time.monotonic()
        result = await client.request("/fail/1/honour?status=429&retry_after=1")
        elapsed = time.monotonic() - started
    assert result.ok and result.attempts == 2
    assert elapsed >= 0.95
    assert mock.stats()["paths"]["/fail/1/honour"]["requests"] == 2


@pytest.mark.asyncio
async def test_retries_end_with_the_last_status(mock: sluice.MockServer) -> None:
    async with sluice.Client(base_url=mock.url, retries=2, backoff_initial="5ms", backoff_max="20ms") as client:
        result = await client.request({"url": "/fail/9/tired", "id": "t"})
    assert not result.ok and result.status == 503 and result.attempts == 3
    assert result.error is not None and result.error.kind == "http_status"
    assert mock.stats()["paths"]["/fail/9/tired"]["requests"] == 3


@pytest.mark.asyncio
async def test_retries_zero_sends_once(mock: sluice.MockServer) -> None:
    async with sluice.Client(base_url=mock.url, retries=0) as client:
        result = await client.request("/status/503")
    assert result.attempts == 1 and result.status == 503


# ---- one result per request --------------------------------------------


@pytest.mark.asyncio
async def test_a_mixed_batch_gets_one_result_per_request(mock: sluice.MockServer) -> None:
    requests: List[Any] = [
        {"url": "/fast", "id": "good"},
        {"url": 5},  # not a string
        {"url": "/fast", "body": {1, 2}},  # not JSON
        42,  # not a request at all
        "",  # an empty line
        {"url": "/fast", "id": "good"},  # a duplicate id
        {"url": "/echo", "method": "POST", "body": {"n": 1}, "id": 7},
        "/status/404",
    ]
    async with sluice.Client(base_url=mock.url) as client:
        results = [r async for r in client.stream(requests)]
    assert sorted(r.line for r in results) == list(range(1, 9))
    by_line = {r.line: r for r in results}
    kinds = {line: (r.error.kind if r.error else None) for line, r in by_line.items()}
    assert kinds == {
        1: None,
        2: "invalid_request",
        3: "invalid_request",
        4: "invalid_request",
        5: "invalid_request",
        6: "duplicate_id",
        7: None,
        8: "http_status",
    }
    assert "`url` must be a string" in by_line[2].error.message  # type: ignore[union-attr]
    assert "cannot be written as JSON" in by_line[3].error.message  # type: ignore[union-attr]
    assert by_line[7].id == 7 and by_line[7].json()["body"] == '{"n":1}'
    assert all(r.attempts == 0 for r in results if r.error and r.error.kind != "http_status")
    assert mock.stats()["requests"] == 3


@pytest.mark.asyncio
async def test_async_iterables_are_read_too(mock: sluice.MockServer) -> None:
    async def source() -> AsyncIterator[Dict[str, Any]]:
        for i in range(5):
            await asyncio.sleep(0.01)
            yield {"url": f"{mock.url}/fast", "id": f"a{i}"}

    async with sluice.Client() as client:
        ids = sorted([r.id async for r in client.stream(source())])
    assert ids == ["a0", "a1", "a2", "a3", "a4"]


@pytest.mark.asyncio
async def test_results_carry_the_record(mock: sluice.MockServer) -> None:
    async with sluice.Client(base_url=mock.url, include_headers=True) as client:
        r = await client.request({"url": "/fast", "id": "rec"})
        b = await client.request("/bytes/4")
    assert r.record["id"] == "rec" and r.method == "GET" and r.url == f"{mock.url}/fast"
    assert r.body_encoding == "json" and r.json() == {"ok": True} and r.text == '{"ok":true}'
    assert r.headers is not None and r.headers["content-type"].startswith("application/json")
    assert r.duration_ms > 0 and r.started_at is not None and not r.maybe_applied
    assert b.body_encoding == "base64" and b.content == bytes((i * 7 + 0x80) % 256 for i in range(4))


# ---- order -------------------------------------------------------------


@pytest.mark.asyncio
async def test_ordered_gives_input_order(mock: sluice.MockServer) -> None:
    delays = [0.3, 0.2, 0.1, 0.0]
    urls = [f"{mock.url}/delay/{d}" for d in delays]
    async with sluice.Client(concurrency=4) as client:
        done = [r.line async for r in client.stream(urls)]
        ordered = [r.line async for r in client.stream(urls, ordered=True)]
    assert done == [4, 3, 2, 1]
    assert ordered == [1, 2, 3, 4]


# ---- backpressure and cancellation -------------------------------------


@pytest.mark.asyncio
async def test_a_consumer_that_stops_stops_the_sending(mock: sluice.MockServer) -> None:
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        while True:
            pulled += 1
            yield f"{mock.url}/fast"

    async with sluice.Client(concurrency=4) as client:
        stream = client.stream(endless())
        first = await stream.__anext__()
        assert first.ok
        # The buffers fill (at whatever speed this machine has), then
        # nothing more is read or sent while nobody takes results.
        deadline = time.monotonic() + 20
        sent, read = -1, -1
        while (mock.stats()["requests"], pulled) != (sent, read):
            assert time.monotonic() < deadline, "the sending never stopped"
            sent, read = mock.stats()["requests"], pulled
            await asyncio.sleep(0.4)
        assert read < 10_000 and sent < 10_000
        await stream.aclose()
    await no_other_tasks()


def rss_mib() -> float:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.asyncio
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_a_generator_of_dicts_runs_in_flat_memory(mock: sluice.MockServer) -> None:
    # 100,000 dicts from a generator: one in 50 is sent, the others are bad
    # requests (each gets its result without the network, through the same
    # intake, routing and results), so the test is quick. Read eagerly,
    # they would take tens of MiB; read as the engine has room, the memory
    # stays where it was after the first 25,000.
    n = 100_000

    def dicts() -> Iterator[Dict[str, Any]]:
        for i in range(n):
            yield {"url": "/fast" if i % 50 == 0 else 5, "method": "GET", "headers": {"x-n": str(i)}}

    before = rss_mib()
    seen, at = 0, 0.0
    async with sluice.Client(base_url=mock.url, concurrency=20) as client:
        async for r in client.stream(dicts()):
            seen += 1
            if seen == 25_000:
                at = rss_mib()
    after = rss_mib()
    assert seen == n and mock.stats()["requests"] == n // 50
    assert after - at < 8, f"RSS grew {after - at:.1f} MiB from 25,000 to 100,000 results"
    assert after - before < 16, f"RSS grew {after - before:.1f} MiB over 100,000 requests"


@pytest.mark.asyncio
async def test_break_cancels_in_flight_requests(mock: sluice.MockServer) -> None:
    async with sluice.Client(concurrency=5) as client:
        async for r in client.stream([f"{mock.url}/fast"] + [f"{mock.url}/delay/30"] * 20):
            assert r.ok
            # The slot /fast freed went to the next request: 5 in flight.
            await wait_for(lambda: mock.stats()["in_flight"] == 5)
            break
        await wait_for(lambda: mock.stats()["in_flight"] == 0, timeout=3)
    assert mock.stats()["requests"] == 6
    await no_other_tasks()


@pytest.mark.asyncio
async def test_task_cancel_cancels_in_flight_requests(mock: sluice.MockServer) -> None:
    async def consume(client: sluice.Client) -> None:
        async for _ in client.stream([f"{mock.url}/delay/30"] * 20):
            pass

    async with sluice.Client(concurrency=4) as client:
        task = asyncio.ensure_future(consume(client))
        await wait_for(lambda: mock.stats()["in_flight"] == 4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(lambda: mock.stats()["in_flight"] == 0, timeout=3)
    assert mock.stats()["requests"] == 4
    await no_other_tasks()


@pytest.mark.asyncio
async def test_leaving_the_client_cancels_its_streams(mock: sluice.MockServer) -> None:
    async with sluice.Client(concurrency=3) as client:
        stream = client.stream([f"{mock.url}/fast"] + [f"{mock.url}/delay/30"] * 10)
        assert (await stream.__anext__()).ok
        await wait_for(lambda: mock.stats()["in_flight"] == 3)
    await wait_for(lambda: mock.stats()["in_flight"] == 0, timeout=3)
    with pytest.raises(RuntimeError, match="closed"):
        client.stream(["/fast"])
    await no_other_tasks()


@pytest.mark.asyncio
async def test_an_iterable_that_fails_raises_after_its_results(mock: sluice.MockServer) -> None:
    def broken() -> Iterator[str]:
        yield f"{mock.url}/fast"
        raise LookupError("the source broke")

    seen = []
    with pytest.raises(LookupError, match="the source broke"):
        async with sluice.Client() as client:
            async for r in client.stream(broken()):
                seen.append(r.ok)
    assert seen == [True]
    await no_other_tasks()


# ---- options -----------------------------------------------------------


def test_bad_options_raise_the_clis_messages() -> None:
    with pytest.raises(ValueError, match=r"^invalid value '0' for concurrency: 0 is not in 1..=100000$"):
        sluice.Client(concurrency=0)
    with pytest.raises(ValueError, match=r"invalid value 'abc' for rate: `abc` is not a rate"):
        sluice.Client(rate="abc")
    with pytest.raises(ValueError, match="budget_burst needs a budget"):
        sluice.Client(budget_burst=5)
    with pytest.raises(ValueError, match="for timeout"):
        sluice.Client(timeout="5 parsecs")
    with pytest.raises(ValueError, match="base_url"):
        sluice.Client(base_url="ftp://x")
    with pytest.raises(TypeError, match="unexpected option 'concurency'"):
        sluice.Client(concurency=3)
    with pytest.raises(ValueError):
        sluice.run([], retry_on="teapot")
    with pytest.raises(ValueError, match=r"for limit_headroom: `0` is not a share above 0 and at most 1"):
        sluice.Client(limit_headroom=0.0)
    with pytest.raises(ValueError, match="use one of auto, off"):
        sluice.Client(learn_limits="sometimes")
    with pytest.raises(ValueError, match="for retry_budget"):
        sluice.Client(retry_budget="lots")
    # Headers follow the CLI's -H rules (the engine's one list).
    with pytest.raises(ValueError, match=r"^headers: `Content-Length` cannot be set by an option"):
        sluice.Client(headers={"Content-Length": "3"})
    with pytest.raises(ValueError, match=r"line break"):
        sluice.Client(headers={"X-A": "1\r\nX-B: 2"})


@pytest.mark.asyncio
async def test_learned_limits_pace_by_the_servers_headers(mock: sluice.MockServer) -> None:
    # A bucket of 10 refilled at 40 a second, told in OpenAI's headers: with
    # limits learned nothing is refused; with learning off, some are.
    url = f"{mock.url}/limited/bucket/openai/{{key}}?limit=10&window=0.25"
    for learn, key in (("auto", "py-learn"), ("off", "py-off")):
        async with sluice.Client(concurrency=10, retries=0, learn_limits=learn) as client:
            stream = client.stream([url.format(key=key)] * 40)
            results = [r async for r in stream]
        statuses = [r.status for r in results]
        assert len(results) == 40
        learned = stream.summary().learned
        if learn == "auto":
            assert statuses == [200] * 40
            # The summary says what was learned, with --summary-json's names.
            assert [(l.origin, l.dialect) for l in learned] == [(mock.url, "openai")]
            assert learned[0].requests_per_second is not None and learned[0].requests_per_second <= 40
            assert learned[0].burst >= 1 and learned[0].refused == 0
        else:
            assert 429 in statuses and learned == []


@pytest.mark.asyncio
async def test_every_option_is_accepted(mock: sluice.MockServer) -> None:
    options: Dict[str, Any] = dict(
        concurrency=2, per_host_concurrency=2, rate="100/s", per_host_rate="100/s", burst=2,
        budget="1000/s", budget_burst=10, timeout=5, connect_timeout="2s", pool_idle_timeout="1s",
        retries=1, retry_on="500-599,timeout", retry_non_idempotent=True, backoff_initial="10ms",
        backoff_max="1s", max_retry_after="10s", halt_after=5, headers=[("X-A", "1")],
        base_url=mock.url, input_format="sluice", ordered=True, reorder_window=8, body="text",
        max_body_size="1MiB", include_headers=True, redact=["x-a"], insecure=False, http2=False,
        compressed=True, learn_limits="auto", limit_headroom=0.9, retry_budget="20%+10/s",
    )
    async with sluice.Client(**options) as client:
        r = await client.request("/fast")
    assert r.ok and r.body_encoding == "text" and r.json() == {"ok": True}


# ---- the sync API ------------------------------------------------------


def test_run_returns_every_result() -> None:
    with sluice.MockServer() as mock:
        results = sluice.run([f"{mock.url}/fast"] * 5 + [f"{mock.url}/status/500"], concurrency=3, retries=0)
        assert len(results) == 6
        assert sum(r.ok for r in results) == 5
        assert mock.stats()["peak_in_flight"] <= 3


@pytest.mark.asyncio
async def test_run_works_inside_a_running_loop(mock: sluice.MockServer) -> None:
    results = sluice.run([f"{mock.url}/fast"] * 3, ordered=True)
    assert [r.line for r in results] == [1, 2, 3]


@pytest.mark.asyncio
async def test_stream_summary(mock: sluice.MockServer) -> None:
    async with sluice.Client(base_url=mock.url, retries=0) as client:
        stream = client.stream(["/fast", "/fast", "/status/500"])
        async for _ in stream:
            pass
    s = stream.summary()
    assert (s.records, s.ok, s.failed, s.attempts) == (3, 2, 1, 3)
    assert s.by_status == {200: 2, 500: 1} and s.by_error == {"http_status": 1}
    assert s.latency is not None and s.latency.max_ms > 0


@pytest.mark.asyncio
async def test_mock_stats_reset(mock: sluice.MockServer) -> None:
    await sluice.Client().request(f"{mock.url}/fast")
    assert mock.stats()["requests"] == 1
    mock.reset_stats()
    assert mock.stats()["requests"] == 0


# ---- the file job ------------------------------------------------------


def write_lines(path: Path, lines: List[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def read_records(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.asyncio
async def test_run_file_writes_one_record_per_line_and_resumes(mock: sluice.MockServer, tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(src, [json.dumps({"url": f"{mock.url}/fast", "id": f"r{i}"}) for i in range(10)] + ["not a url"])
    summary = sluice.run_file(src, output=out, concurrency=3)
    assert (summary.records, summary.ok, summary.failed, summary.not_written) == (11, 10, 1, 0)
    assert summary.by_error == {"invalid_request": 1}
    assert sorted(r["line"] for r in read_records(out)) == list(range(1, 12))
    with pytest.raises(sluice.UsageError, match="already exists and is not empty"):
        sluice.run_file(src, output=out)
    again = sluice.run_file(src, output=out, resume=True)
    assert again.resumed and again.sent_this_run == 0 and again.records == 11
    write_lines(src, [json.dumps({"url": f"{mock.url}/fast", "id": f"x{i}"}) for i in range(10)])
    with pytest.raises(sluice.UsageError, match="input line 1 is .* but its record is for"):
        sluice.run_file(src, output=out, resume=True)
    assert mock.stats()["requests"] == 10


@pytest.mark.asyncio
async def test_run_file_killed_then_resumed_loses_nothing(mock: sluice.MockServer, tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    n = 40
    write_lines(src, [f"{mock.url}/delay/0.2" for _ in range(n)])
    script = f"import sluice; sluice.run_file({str(src)!r}, output={str(out)!r}, concurrency=4)"
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        await wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 8, timeout=20)
        child.kill()  # SIGKILL: no drain, no flush
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    before = len(read_records(out)) if out.read_text().endswith("\n") else None
    assert child.returncode == -signal.SIGKILL
    summary = sluice.run_file(src, output=out, resume=True, concurrency=8)
    lines = sorted(r["line"] for r in read_records(out))
    assert lines == list(range(1, n + 1))
    assert summary.records == n and summary.ok == n and summary.resumed
    if before is not None:
        assert summary.sent_this_run == n - before


@pytest.mark.asyncio
async def test_keyboard_interrupt_drains_and_leaves_a_resumable_file(mock: sluice.MockServer, tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    n = 30
    write_lines(src, [f"{mock.url}/delay/0.6" for _ in range(n)])
    script = f"import sluice; sluice.run_file({str(src)!r}, output={str(out)!r}, concurrency=5)"
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        await wait_for(lambda: mock.stats()["in_flight"] == 5, timeout=20)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
    assert "KeyboardInterrupt" in err
    # The requests in flight at the interrupt finished and were written.
    records = read_records(out)
    assert len(records) >= 5 and all(r["ok"] for r in records)
    assert mock.stats()["in_flight"] == 0
    summary = sluice.run_file(src, output=out, resume=True, concurrency=10)
    assert sorted(r["line"] for r in read_records(out)) == list(range(1, n + 1))
    assert summary.sent_this_run == n - len(records)


# ---- the example and the stubs -----------------------------------------


@pytest.mark.asyncio
async def test_the_example_runs_in_waves() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import delay
    finally:
        sys.path.pop(0)
    elapsed = await delay.main(requests=30, delay=0.3, concurrency=15)
    assert 0.55 <= elapsed < 2.0  # two waves of 0.3 s


def test_mypy_strict_passes_on_the_examples() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(ROOT / "examples"), str(ROOT / "python" / "sluice")],
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": ""},
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.asyncio
async def test_run_file_options_and_refusals(mock: sluice.MockServer, tmp_path: Path) -> None:
    src, out, errors, summary_json = (tmp_path / n for n in ("in.jsonl", "out.jsonl", "errors.jsonl", "s.json"))
    write_lines(src, [json.dumps({"url": f"{mock.url}/fast", "custom_id": "a"}), f"{mock.url}/status/500"])
    with pytest.raises(sluice.UsageError, match="give output="):
        sluice.run_file(src)
    with pytest.raises(sluice.UsageError, match="retry_failed needs resume=True"):
        sluice.run_file(src, output=out, retry_failed=True)
    with pytest.raises(sluice.UsageError, match="is also the input"):
        sluice.run_file(src, output=src)
    with pytest.raises(sluice.UsageError, match="cannot open input .*No such file"):
        sluice.run_file(tmp_path / "missing.jsonl", output=out)
    summary = sluice.run_file(
        [src], output=out, output_format="openai-batch", errors_output=errors,
        summary_json=summary_json, retries=0,
    )
    assert (summary.records, summary.ok, summary.failed) == (2, 1, 1)
    good, bad = read_records(out), read_records(errors)
    assert [g["custom_id"] for g in good] == ["a"] and good[0]["response"]["status_code"] == 200
    assert bad[0]["response"]["status_code"] == 500
    assert json.loads(summary_json.read_text())["records"] == 2
    assert not out.with_name("out.jsonl.sluice-tmp").exists()


@pytest.mark.asyncio
async def test_a_closed_origin_is_never_silent(mock: sluice.MockServer) -> None:
    seen = []
    with pytest.raises(sluice.OriginClosed, match=r"^4 requests got no result because its origin was closed: http://127.0.0.1:\d+: "):
        async with sluice.Client(base_url=mock.url, concurrency=1, halt_after=2) as client:
            async for r in client.stream(["/status/401"] * 6):
                seen.append(r.status)
    assert seen == [401, 401]
    assert mock.stats()["requests"] == 2


def test_run_keeps_the_results_before_an_origin_closed(mock: sluice.MockServer) -> None:
    with pytest.raises(sluice.OriginClosed) as caught:
        sluice.run([f"{mock.url}/status/401"] * 6, concurrency=1, halt_after=2)
    assert [r.status for r in caught.value.results] == [401, 401]
