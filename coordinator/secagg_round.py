"""The coordinator's side of one securely aggregated round: four phases, each with a deadline.

1. ADVERTISE: selected clients send signed public keys; the roster U1 is whoever made it in time.
2. SHARE: each roster client sends its seed shares, encrypted for each other client; U2 = senders.
   The coordinator only relays ciphertexts it cannot read.
3. COLLECT: clients in U2 submit masked updates (through SubmitUpdate); U3 = those that arrived.
4. UNMASK: survivors reveal, for each survivor, a share of its self-mask seed and, for each client
   that dropped after sharing, a share of its mask key; with ``threshold`` responses the
   coordinator removes every mask and learns the sum of U3's updates and nothing else.

Every phase needs at least ``threshold`` clients, which is what lets up to a third of them drop.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np

from swarmnet.coordinator.rejection import Rejected
from swarmnet.coordinator.secagg_unmask import unmask_sum
from swarmnet.errors import ProtocolError
from swarmnet.federated.secagg.messages import AdvertisedKeys

__all__ = ["PHASES", "SecAggRound"]

PHASES = ("advertise", "share", "collect", "unmask", "done")
_MAX_MESSAGE_BYTES = 4096  # one encrypted share bundle or one unmask share is far smaller


class SecAggRound:
    """Phase state of one round; the engine advances ``phase``, the servicer feeds it messages."""

    def __init__(self, selected: tuple[str, ...], threshold: int, context: bytes, length: int) -> None:
        self.selected = selected
        self.threshold = threshold
        self.context = context
        self.length = length  # field values per masked update
        self.phase = "advertise"
        self.keys: dict[str, AdvertisedKeys] = {}
        self.shares: dict[str, dict[str, bytes]] = {}
        self.masked: dict[str, np.ndarray] = {}
        self.responses: dict[str, dict[str, bytes]] = {}

    def expecting(self) -> set[str]:
        """Clients whose message the current phase still waits for."""
        if self.phase == "advertise":
            return set(self.selected) - set(self.keys)
        if self.phase == "share":
            return set(self.keys) - set(self.shares)
        if self.phase == "collect":
            return set(self.shares) - set(self.masked)
        if self.phase == "unmask":
            return set(self.masked) - set(self.responses)
        return set()

    def received(self) -> int:
        """How many clients the current phase has heard from."""
        return len(self._phase_store(self.phase)) if self.phase in PHASES[:4] else 0

    def advertise(self, client_id: str, data: bytes) -> None:
        """Record a client's signed keys."""
        self._require("advertise", client_id, self.selected)
        try:
            keys = AdvertisedKeys.from_bytes(data)
        except ProtocolError as error:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"malformed advertised keys: {error}") from error
        if keys.client_id != client_id or not keys.verify(self.context):
            raise Rejected(
                grpc.StatusCode.UNAUTHENTICATED, "advertised keys are not signed by this client for this round"
            )
        self.keys[client_id] = keys

    def share(self, client_id: str, messages: Mapping[str, bytes]) -> None:
        """Record a client's encrypted shares (one per other roster client)."""
        self._require("share", client_id, self.keys)
        expected = set(self.keys) - {client_id}
        if set(messages) != expected:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "shares must address exactly the other roster clients")
        self._check_sizes(messages)
        self.shares[client_id] = dict(messages)

    def collect(self, client_id: str, masked: np.ndarray) -> None:
        """Record a masked update (called by the engine once the submission passed its checks)."""
        self._require("collect", client_id, self.shares)
        if masked.shape != (self.length,):
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"masked update must have {self.length} values")
        self.masked[client_id] = masked

    def unmask(self, client_id: str, messages: Mapping[str, bytes]) -> None:
        """Record a survivor's unmasking shares."""
        self._require("unmask", client_id, self.masked)
        if set(messages) != set(self.shares):
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, "unmask shares must cover every client that shared keys")
        self._check_sizes(messages)
        self.responses[client_id] = dict(messages)

    def messages_for(self, client_id: str) -> dict[str, bytes]:
        """The ciphertexts addressed to ``client_id``, by sender."""
        return {sender: shares[client_id] for sender, shares in self.shares.items() if client_id in shares}

    def survivors(self) -> list[str]:
        """U3: clients whose masked update arrived."""
        return sorted(self.masked)

    def dropped(self) -> list[str]:
        """U2 minus U3: clients that shared keys but sent no update."""
        return sorted(set(self.shares) - set(self.masked))

    def total(self) -> np.ndarray:
        """The unmasked field sum of the survivors' updates (``ProtocolError`` when it cannot be done)."""
        return unmask_sum(
            self.masked,
            list(self.keys.values()),
            set(self.shares),
            self.responses,
            self.threshold,
            self.context,
            self.length,
        )

    def _require(self, phase: str, client_id: str, allowed: Mapping[str, object] | tuple[str, ...]) -> None:
        if self.phase != phase:
            raise Rejected(grpc.StatusCode.FAILED_PRECONDITION, f"secure aggregation is in phase {self.phase}")
        if client_id not in allowed:
            raise Rejected(grpc.StatusCode.PERMISSION_DENIED, f"client is not part of phase {phase} of this round")
        if client_id in self._phase_store(phase):
            raise Rejected(grpc.StatusCode.ALREADY_EXISTS, f"client already sent its {phase} message")

    def _phase_store(self, phase: str) -> Mapping[str, object]:
        stores: dict[str, Mapping[str, object]] = {
            "advertise": self.keys,
            "share": self.shares,
            "collect": self.masked,
            "unmask": self.responses,
        }
        return stores[phase]

    @staticmethod
    def _check_sizes(messages: Mapping[str, bytes]) -> None:
        if any(len(m) > _MAX_MESSAGE_BYTES for m in messages.values()):
            raise Rejected(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"a secure-aggregation message exceeds {_MAX_MESSAGE_BYTES} B"
            )
