"""The uplink pacer: bursts pass at once, the rest waits for its tokens, in turn order."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest

from swarmnet.averaging.pacer import Pacer

RATE_MBPS = 0.008  # 1000 bytes per second: the microseconds a test takes add a byte or so of tokens


def _run_recording_sleeps(pacer: Pacer, takes: list[int]) -> list[float]:
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> None:
        with mock.patch("swarmnet.averaging.pacer.asyncio.sleep", record):
            for nbytes in takes:
                await pacer.take(nbytes)

    asyncio.run(main())
    return sleeps


def test_a_burst_passes_without_waiting() -> None:
    assert _run_recording_sleeps(Pacer(RATE_MBPS, burst_bytes=5000), [2000, 3000]) == []


def test_bytes_beyond_the_burst_wait_for_their_tokens() -> None:
    sleeps = _run_recording_sleeps(Pacer(RATE_MBPS, burst_bytes=1000), [1000, 500, 2000])
    # 500 bytes of debt, then 2000 more (the clock did not move while "sleeping"): 0.5 s, then 2.5 s.
    assert sleeps == [pytest.approx(0.5, abs=0.05), pytest.approx(2.5, abs=0.05)]


@pytest.mark.parametrize(("mbps", "burst"), [(0.0, 1000), (-1.0, 1000), (10.0, 0)])
def test_impossible_settings_are_refused(mbps: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(mbps, burst)
