"""What this peer contributes to a round: its values plus the error compression dropped last time.

Error feedback at the sender: each part is encoded from ``flat + residual`` by the codecs' fused
kernels, which leave the new compression error in the residual. Our own range is used exactly (its
residual is cleared). When a reducer dies, or its result is over the wrong contributors, its range
is reduced again; our contribution to it is then rebuilt from what we sent it, decoded, plus the
residual, which holds exactly what compression dropped from that.
"""

from __future__ import annotations

import itertools

import torch

from swarmnet.averaging.vectors import Range, SchemaFeedback
from swarmnet.buffers import empty
from swarmnet.compression import Codec

__all__ = ["Contributions"]


class Contributions:
    """This peer's contribution to each range of one round, encoded for the wire or as exact values."""

    def __init__(self, codec: Codec, flat: torch.Tensor, feedback: SchemaFeedback | None) -> None:
        self.codec, self.flat, self.feedback = codec, flat, feedback
        self._first_parts: dict[int, tuple[list[Range], list[bytes]]] = {}  # reducer -> what we sent it
        self._own_first: tuple[int, torch.Tensor] | None = None  # our exact contribution to our own range
        self._recovered: list[tuple[int, torch.Tensor]] = []

    def encode_next(self, pass_no: int, reducer: int, chunk: Range) -> bytes:
        """Our payload for the next chunk of ``reducer``'s range (with error feedback, the first pass's are
        kept for recovery: each reducer's chunks must come in order)."""
        a, b = chunk
        payload = self.encode_part(pass_no, a, b)
        if pass_no == 0 and self.feedback is not None:
            chunks, sent = self._first_parts.setdefault(reducer, ([], []))
            chunks.append(chunk)
            sent.append(payload)
        return payload

    def encode_part(self, pass_no: int, a: int, b: int) -> bytes:
        """Our contribution to ``[a, b)`` on the wire: values plus the error carried from last time."""
        fb = self.feedback
        if fb is None:
            return self.codec.encode(self.flat[a:b])
        if pass_no == 0:  # the fused kernels encode flat + residual and leave the new error in residual
            return fb.store.encode_range(fb.sent, fb.numel, a, self.flat[a:b], self.codec)
        # A recovered contribution carries its residual already.
        return fb.store.encode_range(fb.sent, fb.numel, a, self._recovered_values(a, b), self.codec, restart=True)

    def own_values(self, pass_no: int, chunks: list[Range]) -> list[torch.Tensor]:
        """Our exact contribution to our own chunks (copies: the range is overwritten by its result)."""
        if not chunks:
            return []
        lo, hi = chunks[0][0], chunks[-1][1]
        fb = self.feedback
        if pass_no == 0 and fb is not None and _tiles(chunks):
            # One range (the first pass's): one buffer, sliced per chunk, instead of a copy per chunk. Our own
            # part is used exactly, so its residual is used up: nothing is lost.
            whole = fb.store.take_range(fb.sent, fb.numel, lo, self.flat[lo:hi])
            self._own_first = (lo, whole)
            return [whole[a - lo : b - lo] for a, b in chunks]
        values = []
        for a, b in chunks:
            if fb is None:
                values.append(self.flat[a:b].clone())
            elif pass_no == 0:
                values.append(fb.store.take_range(fb.sent, fb.numel, a, self.flat[a:b]))
            else:  # a recovered contribution carries its residual already
                values.append(self._recovered_values(a, b).clone())
                fb.store.clear_range(fb.sent, fb.numel, a, b)
        if pass_no == 0 and fb is not None:
            self._own_first = (lo, torch.cat(values))
        return values

    def recover(self, orphans: list[Range]) -> None:
        """Rebuild our first-pass contribution to ranges reduced again (with error feedback only; without
        it ``flat`` still holds our values there, since no result was written into them)."""
        fb = self.feedback
        if fb is None:
            return
        if self._own_first is not None:
            lo, values = self._own_first
            if (lo, lo + values.numel()) in orphans:  # our own result was discarded: we reduce it again too
                self._recovered.append(self._own_first)
        for chunks, payloads in self._first_parts.values():
            lo, hi = chunks[0][0], chunks[-1][1]
            if (lo, hi) not in orphans:
                continue
            values = empty(hi - lo)
            for (a, b), payload in zip(chunks, payloads, strict=True):
                self.codec.decode_into(payload, values[a - lo : b - lo])
            fb.store.add_range(fb.sent, fb.numel, lo, values)
            self._recovered.append((lo, values))

    def _recovered_values(self, a: int, b: int) -> torch.Tensor:
        for lo, values in self._recovered:
            if lo <= a and b <= lo + values.numel():
                return values[a - lo : b - lo]
        raise AssertionError(f"no recovered contribution covers [{a}, {b})")  # ranges are sub-ranges of orphans


def _tiles(chunks: list[Range]) -> bool:
    """Whether consecutive chunks meet end to start, covering one range without gaps."""
    return all(b == c for (_, b), (c, _) in itertools.pairwise(chunks))
