#!/usr/bin/env python3
"""The asyncio + aiohttp pattern, as a second Python baseline.

The same worker pattern as asyncio_baseline.py (one shared client session, an
asyncio.Semaphore capping requests in flight, one coroutine per request,
asyncio.gather over all of them, results kept in a deque as {url, status}),
with aiohttp instead of httpx. The connector's limit is raised to the
concurrency (aiohttp's default is 100) and nothing is printed per request or
written to disk.

Usage: asyncio_aiohttp.py URL COUNT CONCURRENCY
Prints one JSON line: {"requests", "ok", "errors", "wall_seconds", "requests_per_second"}.
"""

import asyncio
import json
import sys
import time
from collections import deque

import aiohttp


async def api_worker(session, semaphore, url, results):
    async with semaphore:
        try:
            async with session.get(url) as response:
                await response.read()
                response.raise_for_status()
                results.append({"url": url, "status": response.status})
        except aiohttp.ClientError as e:
            results.append({"url": url, "status": "ERROR", "detail": str(e)})


async def main(url, count, concurrency):
    semaphore = asyncio.Semaphore(concurrency)
    results = deque()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [api_worker(session, semaphore, url, results) for _ in range(count)]
        await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    ok = sum(1 for r in results if r["status"] == 200)
    print(
        json.dumps(
            {
                "requests": count,
                "ok": ok,
                "errors": len(results) - ok,
                "wall_seconds": wall,
                "requests_per_second": count / wall,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: asyncio_aiohttp.py URL COUNT CONCURRENCY")
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
