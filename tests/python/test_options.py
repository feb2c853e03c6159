"""Options given with another Python type than the CLI's text: each is
either accepted with the meaning a user expects (checked at the server) or
refused with a message that says what to give, never a bare TypeError."""

from __future__ import annotations

import datetime
import types
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio

import sluice


@pytest_asyncio.fixture
async def mock() -> AsyncIterator[sluice.MockServer]:
    async with sluice.MockServer() as server:
        yield server


def test_a_bare_number_is_not_a_rate_as_on_the_command_line() -> None:
    # `sluice run --rate 10` is refused (a count needs its period): the
    # same message, as a ValueError, whatever the number's type.
    for option in ("rate", "per_host_rate", "budget"):
        with pytest.raises(ValueError, match=rf"^invalid value '10' for {option}: `10` is not a rate: write a positive whole count per unit, such as 50/s"):
            sluice.Client(**{option: 10})
    with pytest.raises(ValueError, match=r"^invalid value '2.5' for rate: `2.5` is not a rate"):
        sluice.Client(rate=2.5)
    with pytest.raises(TypeError, match=r'^rate must be a rate as text, such as "50/s" or "3000/m", not list$'):
        sluice.Client(rate=[10, "s"])
    with pytest.raises(TypeError, match="not bool"):
        sluice.Client(rate=True)


def test_counts_take_whole_numbers_of_any_numeric_type() -> None:
    sluice.Client(concurrency=4.0, retries=2.0, burst=1e3, max_body_size=1e6)
    with pytest.raises(ValueError, match=r"^invalid value '2.5' for concurrency: not a whole number$"):
        sluice.Client(concurrency=2.5)
    with pytest.raises(ValueError, match=r"^invalid value '0' for concurrency: 0 is not in 1..=100000$"):
        sluice.Client(concurrency=0.0)
    with pytest.raises(ValueError, match="for retries: not a whole number"):
        sluice.Client(retries=float("nan"))
    with pytest.raises(TypeError, match=r"^concurrency must be an int \(a whole number\), not str$"):
        sluice.Client(concurrency="15")
    with pytest.raises(TypeError, match=r"^retries must be an int \(a whole number\), not bool$"):
        sluice.Client(retries=True)


def test_durations_are_text_seconds_or_timedeltas() -> None:
    sluice.Client(timeout=30, connect_timeout=2.5, backoff_max=datetime.timedelta(seconds=5), max_retry_after="1m")
    with pytest.raises(ValueError, match=r"^invalid value '30' for timeout: `30` has no unit: write 30s"):
        sluice.Client(timeout="30")
    with pytest.raises(ValueError, match="for timeout: not a duration: give a number of seconds, 0 or more"):
        sluice.Client(timeout=-1)
    with pytest.raises(ValueError, match="longer than the longest duration sluice accepts"):
        sluice.Client(timeout=1e12)
    with pytest.raises(TypeError, match=r"^timeout must be a duration: seconds \(a number\), text with its unit \(\"30s\"\) or a datetime.timedelta, not bool$"):
        sluice.Client(timeout=True)
    with pytest.raises(TypeError, match="not list"):
        sluice.Client(timeout=[5])


def test_flags_headroom_retry_on_and_headers() -> None:
    with pytest.raises(TypeError, match=r"^http2 must be a bool \(True or False\), not int$"):
        sluice.Client(http2=1)
    sluice.Client(limit_headroom="0.9", retry_on=429)
    sluice.Client(limit_headroom=1)
    with pytest.raises(ValueError, match="for limit_headroom: `1.5` is not a share"):
        sluice.Client(limit_headroom="1.5")
    with pytest.raises(TypeError, match=r"^limit_headroom must be a number in \(0, 1\], not list$"):
        sluice.Client(limit_headroom=[0.9])
    with pytest.raises(TypeError, match=r"^headers must be a dict or a list of \(name, value\) pairs, not str$"):
        sluice.Client(headers="X-A: 1")
    with pytest.raises(TypeError, match=r"^headers: the value of X-Count must be a str, not int$"):
        sluice.Client(headers={"X-Count": 5})
    with pytest.raises(TypeError, match=r"^headers: each header is a \(name, value\) pair, not 3 items$"):
        sluice.Client(headers=[("X-A", "1", "2")])
    with pytest.raises(TypeError, match=r"^headers: each header is a \(name, value\) pair, not str$"):
        sluice.Client(headers=["X-A: 1"])
    # A secret in a header of the wrong type is never echoed.
    with pytest.raises(TypeError) as refused:
        sluice.Client(headers={"Authorization": b"Bearer sk-secret"})
    assert "sk-secret" not in str(refused.value)


@pytest.mark.asyncio
async def test_numbers_given_are_the_limits_sent_by(mock: sluice.MockServer) -> None:
    # concurrency=3.0 is 3 in flight at the server; headers as pairs in
    # lists and as a read-only mapping reach it; a timedelta timeout holds.
    headers: Any = types.MappingProxyType({"X-Team": "blue"})
    async with sluice.Client(concurrency=3.0, timeout=datetime.timedelta(seconds=5), headers=headers) as client:
        results = [r async for r in client.stream(f"{mock.url}/delay/0.1" for _ in range(9))]
        echo = await client.request(f"{mock.url}/echo")
    assert [r.ok for r in results] == [True] * 9
    assert mock.stats()["peak_in_flight"] == 3
    assert echo.json()["headers"]["x-team"] == "blue"
    async with sluice.Client(headers=[["X-A", "1"], ("X-A", "2")]) as client:
        echo = await client.request(f"{mock.url}/echo")
    assert echo.json()["headers"]["x-a"] == "1, 2"
