"""A token bucket over this peer's uplink: the data phase can send a little below the link's rate.

A link whose queue the sender keeps full (a modem's buffer; the testbed's tbf) delays everything
behind it for as long as the queue is deep, the TCP acknowledgements of the data this peer
*receives* included: its downloads then slow down with its uploads full. Sending slightly below the
uplink's rate keeps that queue short, at the price of that margin of the link.
"""

from __future__ import annotations

import asyncio

__all__ = ["Pacer"]


class Pacer:
    """Lets ``mbps`` Mbit/s through on average, in bursts of at most ``burst_bytes``; shared by every
    stream of one peer, which take turns in the order they asked."""

    def __init__(self, mbps: float, burst_bytes: int) -> None:
        if mbps <= 0 or burst_bytes <= 0:
            raise ValueError(f"need a positive rate and burst, got {mbps} Mbit/s and {burst_bytes} bytes")
        self.bytes_per_second = mbps * 1e6 / 8
        self._burst = float(burst_bytes)
        self._tokens = float(burst_bytes)
        self._stamp: float | None = None
        self._turns = asyncio.Lock()

    async def take(self, nbytes: int) -> None:
        """Return once ``nbytes`` may go out."""
        async with self._turns:
            now = asyncio.get_running_loop().time()
            if self._stamp is not None:
                self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self.bytes_per_second)
            self._stamp = now
            self._tokens -= nbytes
            if self._tokens < 0:  # in debt: wait until it is paid, holding the turn (first come, first served)
                await asyncio.sleep(-self._tokens / self.bytes_per_second)
