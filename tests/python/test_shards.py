"""run_file's shard, redis, job and redis_timeout options (the CLI's --shard,
--redis, --job, --redis-timeout): two shards of one file sharing one rate
through a real redis-server, started here on a free port; arrivals and
requests counted at the test upstream."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List

import pytest
import pytest_asyncio

import sluice


@pytest_asyncio.fixture
async def mock() -> AsyncIterator[sluice.MockServer]:
    async with sluice.MockServer() as server:
        yield server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 (persistence off), stopped after
    the test. Skipped, loudly, only when redis-server is not installed (and
    never under CI=true: CI installs it)."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed: run_file's redis tests are SKIPPED (Debian: apt-get install redis-server)"
        assert os.environ.get("CI") != "true", message
        pytest.skip(message)
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not listen within 10 s"
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait(timeout=10)


def read_records(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def most_in_window(times_ms: List[float], window_ms: float) -> int:
    times = sorted(times_ms)
    most, end = 0, 0
    for i, t in enumerate(times):
        while end < len(times) and times[end] < t + window_ms:
            end += 1
        most = max(most, end - i)
    return most


@pytest.mark.asyncio
async def test_two_shards_share_one_rate_through_redis(mock: sluice.MockServer, redis_url: str, tmp_path: Path) -> None:
    n = 40
    src = tmp_path / "in.txt"
    src.write_text("".join(f"{mock.url}/fast\n" for _ in range(n)))
    outs = [tmp_path / f"out-{k}.jsonl" for k in range(2)]
    errors: List[BaseException] = []

    def shard(k: int) -> None:
        try:
            summary = sluice.run_file(src, output=outs[k], shard=f"{k}/2", redis=redis_url, job="py-shards", rate="20/s")
            assert summary.records == n // 2 and summary.ok == n // 2
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=shard, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    # Each shard wrote its own lines (line modulo 2 is K), with their global
    # numbers; together, every line exactly once.
    lines: List[int] = []
    for k, out in enumerate(outs):
        mine = [r["line"] for r in read_records(out)]
        assert all(line % 2 == k for line in mine), mine
        lines.extend(mine)
    assert sorted(lines) == list(range(1, n + 1))
    # One rate for both: at the server, no second holds more than
    # 20 + the burst of 1 (each alone would send 20/s: 40 in a second).
    arrivals = [a["ms"] for a in mock.stats()["arrivals"]]
    assert len(arrivals) == n
    assert most_in_window(arrivals, 1000.0) <= 21


def test_shard_and_redis_options_are_checked_as_the_cli_checks_them(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("http://127.0.0.1:9/never\n")
    out = tmp_path / "out.jsonl"
    for options, says in [
        ({"shard": "2/2"}, "shard 2 of 2 does not exist"),
        ({"shard": "0/0"}, "at least one shard"),
        ({"shard": "one"}, "is not K/N"),
        ({"shard": "env"}, "JOB_COMPLETION_INDEX"),
        ({"redis": "redis://127.0.0.1:1"}, "redis needs job"),
        ({"job": "j"}, "job needs redis"),
        ({"redis_timeout": "soon", "redis": "redis://127.0.0.1:1", "job": "j"}, "redis_timeout"),
    ]:
        with pytest.raises(ValueError, match=says):
            sluice.run_file(src, output=out, **options)
    # A Redis that cannot be used is the CLI's exit 2: UsageError, before
    # anything is sent or written.
    for url, says in [("http://127.0.0.1:6379", "redis://"), ("redis://127.0.0.1:1", "cannot connect")]:
        with pytest.raises(sluice.UsageError, match=says):
            sluice.run_file(src, output=out, redis=url, job="j")
        assert not out.exists()
