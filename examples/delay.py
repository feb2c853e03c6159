"""200 requests to /delay/1, 15 at a time, against the built-in test server.

The seed's own job: ceil(200 / 15) = 14 waves of one second, so about 14 s.
Run it with `python examples/delay.py` once the package is installed
(`pip install .` from a clone).
"""

import asyncio
import time

import sluice


async def main(requests: int = 200, delay: float = 1.0, concurrency: int = 15) -> float:
    async with sluice.MockServer() as mock:
        urls = (f"{mock.url}/delay/{delay}" for _ in range(requests))
        started = time.monotonic()
        async with sluice.Client(concurrency=concurrency, retries=3) as client:
            ok = sum([r.ok async for r in client.stream(urls)])
        elapsed = time.monotonic() - started
        print(f"{ok}/{requests} ok in {elapsed:.1f} s; the server saw at most "
              f"{mock.stats()['peak_in_flight']} at once")
        return elapsed


if __name__ == "__main__":
    asyncio.run(main())
