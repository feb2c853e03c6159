"""Where the event loop cannot watch the bell's socket (Windows' Proactor
loop; here a selector loop whose add_reader raises NotImplementedError, as
the Proactor's does), the client's doorbell thread wakes the loop instead:
everything still works, and the thread ends with the client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from typing import Any, Callable, Coroutine, List

import pytest

import sluice


class NoReaderLoop(asyncio.SelectorEventLoop):
    """A loop that cannot watch files, as the Proactor loop."""

    def add_reader(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError


def doorbell_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sluice-doorbell"]


def on_a_loop_without_add_reader(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    loop = NoReaderLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_streams_requests_and_limits_work_without_add_reader() -> None:
    async def main() -> None:
        async with sluice.MockServer() as mock:
            async with sluice.Client(concurrency=5, retries=0) as client:
                results = [r async for r in client.stream(f"{mock.url}/delay/0.05" for _ in range(40))]
                assert doorbell_threads(), "the doorbell thread wakes the loop"
                ordered = [r.line async for r in client.stream([f"{mock.url}/fast"] * 300, ordered=True)]
                one = await client.request(f"{mock.url}/status/503")
            assert [r.ok for r in results] == [True] * 40
            assert mock.stats()["peak_in_flight"] == 5
            assert ordered == list(range(1, 301))
            assert one.status == 503 and not one.ok
            # The run is over: its doorbell thread ends.
            for _ in range(100):
                if not doorbell_threads():
                    break
                await asyncio.sleep(0.02)
            assert doorbell_threads() == []

    on_a_loop_without_add_reader(main)


def test_break_and_backpressure_work_without_add_reader() -> None:
    async def main() -> None:
        async with sluice.MockServer() as mock:
            async with sluice.Client(concurrency=4, retries=0) as client:
                # A generator far longer than any buffer: the consumer stops
                # after a few, and sending stops with it.
                stream = client.stream(f"{mock.url}/delay/0.5" for _ in range(1_000_000))
                async for _ in stream:
                    break
                await stream.aclose()
                await asyncio.sleep(0.6)
                seen = mock.stats()["requests"]
                assert seen < 20
                assert mock.stats()["in_flight"] == 0

    on_a_loop_without_add_reader(main)


@pytest.mark.asyncio
async def test_the_private_switch_forces_the_doorbell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sluice, "_FORCE_DOORBELL", True)
    async with sluice.MockServer() as mock:
        async with sluice.Client(concurrency=8) as client:
            results = [r async for r in client.stream([f"{mock.url}/fast"] * 1000)]
            assert doorbell_threads()
    assert len(results) == 1000 and all(r.ok for r in results)
    assert sorted(r.line for r in results) == list(range(1, 1001))


def test_exit_with_a_client_still_open_on_the_doorbell() -> None:
    # The interpreter exits while the doorbell thread waits in Rust: it is
    # stopped first, and the process ends cleanly.
    code = """
import asyncio, sluice
sluice._FORCE_DOORBELL = True
async def main():
    mock = await sluice.MockServer().start()
    client = sluice.Client(concurrency=2)
    stream = client.stream([mock.url + "/delay/5"] * 4)
    task = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.3)
    print("started", flush=True)
    globals()["keep"] = (mock, client, stream, task)
loop = asyncio.new_event_loop()
loop.run_until_complete(main())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "started\n"
