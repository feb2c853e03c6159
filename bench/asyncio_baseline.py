#!/usr/bin/env python3
"""The asyncio + httpx pattern sluice replaces, written correctly, as a baseline.

This is the usual worker pattern for batches of API calls: one shared
httpx.AsyncClient, an asyncio.Semaphore capping requests in flight, one worker
coroutine per request (an `async def`, which write-ups of the pattern often
forget), and asyncio.gather over all of them. Results are collected in a deque
as {"url", "status"}; nothing is written to disk.

Two changes make it a fair (stronger) baseline:
  * httpx.Limits is raised to the concurrency, otherwise httpx's default pool
    (max_connections=100) would cap it below the semaphore;
  * the per-request print() calls of the usual pattern are dropped (sluice runs with -q).

Usage: asyncio_baseline.py URL COUNT CONCURRENCY
Prints one JSON line: {"requests", "ok", "errors", "wall_seconds", "requests_per_second"}.
"""

import asyncio
import json
import sys
import time
from collections import deque

import httpx


async def api_worker(client, semaphore, url, results):
    async with semaphore:
        try:
            response = await client.get(url, timeout=30.0)
            response.raise_for_status()
            results.append({"url": url, "status": response.status_code})
        except httpx.HTTPStatusError as e:
            results.append({"url": url, "status": "ERROR", "detail": str(e)})
        except httpx.RequestError as e:
            results.append({"url": url, "status": "ERROR", "detail": str(e)})


async def main(url, count, concurrency):
    semaphore = asyncio.Semaphore(concurrency)
    results = deque()
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency
    )
    start = time.perf_counter()
    async with httpx.AsyncClient(limits=limits) as client:
        tasks = [api_worker(client, semaphore, url, results) for _ in range(count)]
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
        sys.exit("usage: asyncio_baseline.py URL COUNT CONCURRENCY")
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
