"""The Python package checked as a newcomer reads the README and the CLI's
documentation: the summary carries what the CLI's ``--summary-json``
carries, and a refused file job says which keyword lets it go on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import AsyncIterator

import pytest
import pytest_asyncio

import sluice


@pytest_asyncio.fixture
async def mock() -> AsyncIterator[sluice.MockServer]:
    async with sluice.MockServer() as server:
        yield server


def test_an_existing_output_names_the_keywords_that_let_the_job_go_on(tmp_path: Path) -> None:
    inp = tmp_path / "in.txt"
    inp.write_text("http://127.0.0.1:9/never\n")
    out = tmp_path / "out.jsonl"
    out.write_text('{"line": 1}\n')
    with pytest.raises(ValueError) as caught:
        sluice.run_file(inp, output=out)
    message = str(caught.value)
    assert message.startswith(f"output {out} already exists and is not empty"), message
    assert "resume=True" in message and "overwrite=True" in message, message
    assert "--" not in message and "-o " not in message, message
    summary = tmp_path / "summary.json"
    summary.write_text("{}\n")
    with pytest.raises(ValueError, match=r"^summary_json .* overwrite=True"):
        sluice.run_file(inp, output=tmp_path / "other.jsonl", summary_json=summary)


@pytest.mark.asyncio
async def test_the_summary_has_the_adaptive_limit_and_the_retry_budget(mock: sluice.MockServer, tmp_path: Path) -> None:
    inp = tmp_path / "in.txt"
    inp.write_text("".join(f"{mock.url}/fast?i={i}\n" for i in range(20)))
    out = tmp_path / "out.jsonl"
    summary_json = tmp_path / "summary.json"
    summary = sluice.run_file(inp, output=out, adaptive=True, concurrency=8, summary_json=summary_json)
    assert summary.ok == 20
    assert summary.adaptive is not None, "adaptive=True reports the concurrency limit"
    assert 1 <= summary.adaptive.lowest <= summary.adaptive.limit <= summary.adaptive.highest <= 8
    assert summary.adaptive.decreases == 0
    assert summary.retry_budget is not None, "the default retry budget reports its waits"
    assert summary.retry_budget.retries_held == 0 and summary.retry_budget.waited_seconds == 0.0
    written = json.loads(summary_json.read_text())
    assert written["adaptive"]["limit"] == summary.adaptive.limit
    assert written["retry_budget"] == {"waited_seconds": 0.0, "retries_held": 0}

    plain = sluice.run_file(inp, output=tmp_path / "plain.jsonl", retry_budget="off")
    assert plain.adaptive is None and plain.retry_budget is None

    async with sluice.Client(adaptive=True, concurrency=4) as client:
        stream = client.stream([f"{mock.url}/fast"] * 10)
        assert [r.ok async for r in stream] == [True] * 10
    limit = stream.summary().adaptive
    assert limit is not None and 1 <= limit.limit <= 4


@pytest.mark.asyncio
async def test_learned_token_limits_are_in_the_summary(mock: sluice.MockServer) -> None:
    url = f"{mock.url}/limited/bucket/openai/py-tokens?limit=100&window=1&tokens=100000"
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}
    async with sluice.Client(concurrency=2) as client:
        stream = client.stream([{"method": "POST", "url": url, "body": body}] * 4)
        assert [r.status async for r in stream] == [200] * 4
    learned = stream.summary().learned
    assert [l.dialect for l in learned] == ["openai"]
    assert [t.dimension for t in learned[0].tokens] == ["tokens"]
    assert learned[0].tokens[0].per_second > 0 and learned[0].tokens[0].burst > 0


@pytest.mark.asyncio
async def test_a_result_has_every_field_of_its_record(mock: sluice.MockServer) -> None:
    async with sluice.Client(base_url=mock.url, include_headers=True, retries=0) as client:
        results = [
            await client.request(f"/redirect/302?to={mock.url}/fast"),
            await client.request("/status/500"),
            await client.request({"url": 5}),
        ]
    for r in results:
        for key, value in r.record.items():
            attribute = getattr(r, key)
            if key == "error" and value is not None:
                assert (attribute.kind, attribute.message) == (value["kind"], value["message"])
            else:
                assert attribute == value, key
    assert results[0].final_url == f"{mock.url}/fast"
    assert results[0].http_version == "HTTP/1.1"
