#!/usr/bin/env python3
"""The Python package under load: COUNT GETs of URL through
`client.stream` at CONCURRENCY, fed from a generator, every result consumed
in Python (its record parsed, `.ok` read).

Usage: python_stream.py URL COUNT CONCURRENCY
Prints one JSON line: {"requests", "ok", "wall_seconds", "requests_per_second"}.
"""

import asyncio
import json
import sys
import time

import sluice


async def main(url: str, count: int, concurrency: int) -> None:
    started = time.perf_counter()
    ok = done = 0
    async with sluice.Client(concurrency=concurrency, retries=0) as client:
        async for result in client.stream(url for _ in range(count)):
            done += 1
            ok += result.ok
    wall = time.perf_counter() - started
    print(json.dumps({"requests": done, "ok": ok, "wall_seconds": wall,
                      "requests_per_second": done / wall}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
