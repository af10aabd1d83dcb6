"""The other reducers' results of a reduce pass, as they reach this member, and what the round makes of them
(``allreduce.py``): which reducers' ranges must be reduced again, and which elements keep our own values.
"""

from __future__ import annotations

import logging

from swarmnet.averaging.exchange import RoundExchange
from swarmnet.averaging.inbox import Inbox
from swarmnet.averaging.report import RoundReport
from swarmnet.averaging.results import ResultWriter
from swarmnet.averaging.vectors import Range

__all__ = ["ResultCollector"]

logger = logging.getLogger(__name__)


class ResultCollector:
    """Receives the results of each pass into the round's vector (through ``results``) and keeps the books."""

    def __init__(self, exchange: RoundExchange, inbox: Inbox, results: ResultWriter, *, ratio: float) -> None:
        self.results = results
        self._exchange, self._inbox, self._ratio = exchange, inbox, ratio

    async def collect(
        self, pass_no: int, assignment: dict[int, list[Range]], reporters: set[int], contributors: set[int]
    ) -> tuple[set[int], set[int]]:
        """Write the reducers' results into the vector; return the reducers whose result is missing, and
        those whose result is over other contributors (both keep our own values for now). A bad result's
        reducer is distrusted instead (``ResultWriter.distrusted``)."""
        me, report = self._exchange.me, self._exchange.report
        verdicts: dict[int, str] = {}

        def apply(reducer: int) -> None:
            if reducer in reporters:
                verdicts[reducer] = self.results.apply_result(pass_no, assignment[reducer], reducer, contributors)

        def size(reducers: set[int]) -> float:
            return 4 * self._ratio * sum(hi - lo for r in reducers for lo, hi in assignment[r])

        await self._exchange.receive("result", pass_no, reporters - {me}, size(reporters - {me}), apply)
        mismatched = {r for r, verdict in verdicts.items() if verdict == "mismatched"}
        if mismatched:  # their reducers amend what they streamed, once they know the contributors too

            def patch(reducer: int) -> None:
                verdicts[reducer] = self.results.apply_amendment(pass_no, assignment[reducer], reducer, contributors)

            await self._exchange.receive("amend", pass_no, mismatched, size(mismatched), patch)
            mismatched = {r for r, verdict in verdicts.items() if verdict == "mismatched"}
        self._inbox.drop("result", pass_no)
        self._inbox.drop("amend", pass_no)
        report.amended_elements = self.results.amended_elements
        used = {r for r, verdict in verdicts.items() if verdict in ("applied", "bad")}
        missing = reporters - {me} - used - mismatched
        for reducer in missing:
            if reducer not in report.failed:
                logger.warning("round %s: no usable result from reducer %s", self._exchange.group.round_id,
                               self._exchange.group.members[reducer])  # fmt: skip
        return missing, mismatched

    def count_recovery(self, again: dict[int, list[Range]], lost: set[int]) -> None:
        """Count the elements the recovery pass re-reduced: ``again``'s ranges, but for reducers whose result
        was ``lost`` or refused (a refused range counts among the distrusted ones)."""
        kept = lost | self.results.refused(1)
        spans = (span for r, spans in again.items() if r not in kept for span in spans)
        self._exchange.report.recovered_elements = sum(hi - lo for lo, hi in spans)

    def close(self, orphans: list[Range]) -> RoundReport:
        """Finish the report: ``orphans`` (ranges no survivor reduced) and the refused results' ranges keep our
        own values. A refused result's range is not reduced again: that would need every contributor's part,
        and a lying reducer need not know that it was found out."""
        report = self._exchange.report
        report.distrusted = dict(self.results.distrusted)
        report.unaveraged_elements = sum(hi - lo for lo, hi in orphans) + self.results.distrusted_elements
        if report.unaveraged_elements:
            logger.warning("round %s: %d elements keep their local values", self._exchange.group.round_id,
                           report.unaveraged_elements)  # fmt: skip
        return report
