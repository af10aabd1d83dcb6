"""The verified roster of a round: who takes part, their keys, and their Shamir points.

Clients and the coordinator must agree on each client's Shamir evaluation point without talking
about it, so it is derived from the roster alone: ``x = 1 + index`` in ``sorted(client_id)``
order (x = 0 would be the secret itself).
"""

from __future__ import annotations

from collections.abc import Sequence

from swarmnet.errors import ProtocolError
from swarmnet.federated.secagg.messages import AdvertisedKeys

__all__ = ["Roster"]


class Roster:
    """The advertised keys of every client in a round (U1), each checked against the round context."""

    def __init__(self, entries: Sequence[AdvertisedKeys], context: bytes) -> None:
        """Verify every entry.

        Raises:
            ProtocolError: naming the first client that appears twice or fails verification.
        """
        by_id: dict[str, AdvertisedKeys] = {}
        for entry in entries:
            if entry.client_id in by_id:
                raise ProtocolError(f"client {entry.client_id} appears twice in the roster")
            entry.check(context)
            by_id[entry.client_id] = entry
        self._entries = dict(sorted(by_id.items()))
        self._points = {client_id: index + 1 for index, client_id in enumerate(self._entries)}

    @property
    def ids(self) -> tuple[str, ...]:
        """Client ids in sorted order."""
        return tuple(self._entries)

    def point(self, client_id: str) -> int:
        """The Shamir evaluation point of ``client_id``'s shares."""
        return self._points[client_id]

    def __getitem__(self, client_id: str) -> AdvertisedKeys:
        return self._entries[client_id]

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)
