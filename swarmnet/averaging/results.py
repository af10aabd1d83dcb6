"""Reducers' results, as they reach a member: checked whole, then decoded into its vector (or left out).

Under a robust rule each result is also judged against the others once they are all in (``plausible.py``):
an implausible one is taken back out, and our own values stand there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from swarmnet.averaging.amend import amended_payloads
from swarmnet.averaging.inbox import Inbox
from swarmnet.averaging.plausible import ResultCheck
from swarmnet.averaging.vectors import Range, chunk_bounds
from swarmnet.compression import Codec
from swarmnet.errors import CodecError

__all__ = ["ResultWriter"]

logger = logging.getLogger(__name__)


class ResultWriter:
    """Writes reducers' results from ``inbox`` into ``flat``: a result is used only if every chunk of it is
    valid and over the round's contributors, so a bad or mismatched one leaves our own values untouched.

    Each ``apply_*`` returns a verdict: "applied", "missing", "mismatched" (over other contributors) or
    "bad"; a bad result's reducer is distrusted (``distrusted``, with the reason), as is one whose applied
    result ``refuse_implausible`` takes back. ``tolerance``: check results for plausibility (robust rules),
    or None.
    """

    def __init__(
        self,
        codec: Codec,
        flat: torch.Tensor,
        inbox: Inbox,
        chunk: int,
        members: Sequence[str],
        tolerance: float | None = None,
    ) -> None:
        self._codec, self._flat, self._inbox, self._chunk, self._members = codec, flat, inbox, chunk, members
        self._check = ResultCheck(flat, tolerance) if tolerance is not None else None
        self.amended_elements = 0  # elements taken from amendments, over every pass
        self.distrusted: dict[int, str] = {}  # reducer -> why we refused its result, over every pass
        self.distrusted_elements = 0  # of the ranges of those results: they keep our values
        self._refused: dict[int, set[int]] = {}  # pass -> reducers whose result of that pass we refused

    def apply_result(self, pass_no: int, spans: list[Range], reducer: int, contributors: set[int]) -> str:
        """Decode one reducer's streamed result."""
        chunks = chunk_bounds(spans, self._chunk)
        message = self._inbox.get("result", pass_no, reducer)
        if message is None:
            return "missing"
        try:
            payloads = self._validated(message.ordered(), chunks)
        except CodecError as e:
            return self._distrust(pass_no, reducer, f"its result: {e}", chunks)
        if any(set(message.tags[j]) != contributors for j in range(len(chunks))):
            return "mismatched"
        return self._decode(payloads, chunks, reducer)

    def apply_amendment(self, pass_no: int, spans: list[Range], reducer: int, contributors: set[int]) -> str:
        """Decode a reducer's streamed result with its amendment laid over it."""
        chunks = chunk_bounds(spans, self._chunk)
        result, amendment = self._inbox.get("result", pass_no, reducer), self._inbox.get("amend", pass_no, reducer)
        payloads = amended_payloads(result, amendment, contributors) if result and amendment else None
        if payloads is None:
            logger.warning("amendment of reducer %s does not make its result one over the contributors",
                           self._members[reducer])  # fmt: skip
            return "mismatched"
        try:
            payloads = self._validated(payloads, chunks)
        except CodecError as e:
            return self._distrust(pass_no, reducer, f"its amendment: {e}", chunks)
        patches = amendment.ordered() if amendment is not None else []
        self.amended_elements += sum(b - a for (a, b), patch in zip(chunks, patches, strict=True) if len(patch))
        return self._decode(payloads, chunks, reducer)

    def keep_own(self, me: int, mine: list[Range], payloads: Sequence[bytes]) -> None:
        """Our range becomes what everyone else decodes from our result."""
        self._decode(payloads, mine, me)

    def refuse_implausible(self, pass_no: int, me: int) -> None:
        """Take back the results of pass ``pass_no`` that are implausible (our values stand there again) and
        distrust their reducers. Call once every result of the pass is in."""
        if self._check is not None:
            for reducer, (reason, spans) in self._check.refuse_outliers(me).items():
                self._distrust(pass_no, reducer, reason, spans)

    def refused(self, pass_no: int) -> set[int]:
        """Reducers whose result of pass ``pass_no`` we refused."""
        return set(self._refused.get(pass_no, ()))

    def _distrust(self, pass_no: int, reducer: int, reason: str, spans: list[Range]) -> str:
        logger.warning("distrusting reducer %s: %s", self._members[reducer], reason)
        self.distrusted[reducer] = reason
        self.distrusted_elements += sum(b - a for a, b in spans)
        self._refused.setdefault(pass_no, set()).add(reducer)
        return "bad"

    def _validated(self, payloads: list[memoryview], chunks: list[Range]) -> list[memoryview]:
        if len(payloads) != len(chunks):
            raise CodecError(f"{len(payloads)} chunks, not {len(chunks)}")
        for payload, (a, b) in zip(payloads, chunks, strict=True):
            self._codec.validate(payload, b - a)
        return payloads

    def _decode(self, payloads: Sequence[memoryview | bytes], chunks: list[Range], reducer: int) -> str:
        for payload, (a, b) in zip(payloads, chunks, strict=True):
            if self._check is not None:
                self._check.keep(a, b)
            self._codec.decode_into(payload, self._flat[a:b])
        if self._check is not None:
            self._check.measure(reducer, chunks)
        return "applied"
