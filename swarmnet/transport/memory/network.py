"""In-process peers for protocol tests and simulations of thousands of peers in one event loop.

``MemoryNetwork`` is a whole swarm: one logical DHT with hivemind's expiry rules, an RPC fabric
with seeded loss and delay (``FaultPlan``), and switches to kill peers and partition the swarm.
Each ``MemoryTransport`` is one peer's ``Transport`` on it. All waiting is ``asyncio.sleep`` /
``asyncio.timeout`` on the running loop, so under ``run_virtual`` an hour of simulated traffic
costs only the Python work it contains, and the same seed replays the same run.

Example::

    async def echo(caller: str, request: bytes) -> bytes:
        return request

    async def main() -> None:
        network = MemoryNetwork(faults=FaultPlan(seed=1, drop_rate=0.01, max_delay=0.05))
        a, b = network.add_peer(), network.add_peer()
        await b.add_unary_handler("echo", echo)
        assert await a.call_unary(b.peer_id, "echo", b"hi") == b"hi"

    run_virtual(main())
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass

from swarmnet.clock import Clock, LoopClock
from swarmnet.errors import ConfigError
from swarmnet.transport.base import TransportLimits
from swarmnet.transport.faults import FaultPlan
from swarmnet.transport.memory.dht import MemoryDHT
from swarmnet.transport.memory.transport import MemoryTransport

__all__ = ["MemoryNetwork", "MemoryTransport", "NetworkStatistics"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class NetworkStatistics:
    """Counters since the network was created."""

    messages_sent: int  # RPC messages put on the wire (stream opens included), lost ones too
    messages_dropped: int  # lost to drop_rate or to a partition
    bytes_sent: int  # payload bytes of those messages
    dht_stores: int  # store() calls that reached the network
    dht_stores_accepted: int
    dht_gets: int
    dht_ops_dropped: int  # stores and gets lost to drop_rate
    live_peers: int


class MemoryNetwork:
    """A simulated swarm: a shared DHT plus RPC between the peers added to it.

    ``clock`` measures DHT expiry; by default it is ``LoopClock`` of the running loop, created on
    first use so that it follows virtual time under ``run_virtual``. A network (and its peers)
    belongs to the event loop it was first used in.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        faults: FaultPlan = FaultPlan(),  # noqa: B008 -- frozen, so sharing the default is safe
        limits: TransportLimits = TransportLimits(),  # noqa: B008 -- frozen as well
    ) -> None:
        faults.validate()
        limits.validate()
        self._clock = clock
        self._faults = faults
        self._limits = limits
        self._rng = random.Random(faults.seed)
        self._dht = MemoryDHT(limits.max_value_bytes)
        self._peers: dict[str, MemoryTransport] = {}
        self._known: set[str] = set()  # every id ever added, so kill() can tell typos from the dead
        self._next_id = 0
        self._group_of: dict[str, int] | None = None  # peer -> partition group; None when healed
        self._messages_sent = 0
        self._messages_dropped = 0
        self._bytes_sent = 0
        self._dht_stores = 0
        self._dht_stores_accepted = 0
        self._dht_gets = 0
        self._dht_ops_dropped = 0

    @property
    def clock(self) -> Clock:
        """The clock DHT expiry is measured in (must first be read inside the loop when defaulted)."""
        if self._clock is None:
            self._clock = LoopClock(asyncio.get_running_loop())
        return self._clock

    @property
    def limits(self) -> TransportLimits:
        """The limits every peer of this network enforces."""
        return self._limits

    @property
    def faults(self) -> FaultPlan:
        """The faults currently applied."""
        return self._faults

    def set_faults(self, faults: FaultPlan) -> None:
        """Apply other faults from now on (e.g. a lossy phase). The RNG is kept, not reseeded by ``faults.seed``."""
        faults.validate()
        self._faults = faults

    def add_peer(self, peer_id: str | None = None) -> MemoryTransport:
        """Create a peer; ``peer_id`` defaults to a fresh ``mem-NNNNNN``. A dead peer's id may be reused (restart)."""
        if peer_id is None:
            while True:
                self._next_id += 1
                peer_id = f"mem-{self._next_id:06d}"
                if peer_id not in self._known:
                    break
        elif peer_id in self._peers:
            raise ConfigError(f"peer id {peer_id!r} is already live on this network")
        transport = MemoryTransport(self, peer_id)
        self._peers[peer_id] = transport
        self._known.add(peer_id)
        return transport

    def kill(self, peer_id: str) -> None:
        """Stop ``peer_id`` at once, like SIGKILL: calls to it fail, its own operations raise
        ``TransportClosed``, its running handlers are cancelled, and its DHT values stay until they
        expire. Killing a peer that is already gone does nothing.

        Raises:
            KeyError: no peer with this id was ever added.
        """
        if peer_id not in self._known:
            raise KeyError(peer_id)
        transport = self._peers.get(peer_id)
        if transport is not None:
            logger.debug("killing peer %s", peer_id)
            transport._close_now()

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the swarm: peers in different groups cannot call each other. Calls across the cut
        raise ``PeerUnreachable``; responses and stream items that would cross it are lost, so
        their callers time out. Peers in no group, including ones added later, form one more
        group. The DHT stays shared (it models lookups, not routing). Replaces any earlier partition.
        """
        group_of: dict[str, int] = {}
        for index, group in enumerate(groups):
            if isinstance(group, str):
                raise TypeError(f"a group is an iterable of peer ids, not the single id {group!r}")
            for peer_id in group:
                if group_of.setdefault(peer_id, index) != index:
                    raise ConfigError(f"peer {peer_id!r} is in more than one partition group")
        self._group_of = group_of
        logger.debug("partitioned the network into %d listed groups", len(groups))

    def heal(self) -> None:
        """Undo ``partition``: every live peer can reach every other again."""
        self._group_of = None

    def live_peer_ids(self) -> list[str]:
        """Ids of the peers that are neither killed nor shut down."""
        return list(self._peers)

    def statistics(self) -> NetworkStatistics:
        """A snapshot of the traffic counters."""
        return NetworkStatistics(
            messages_sent=self._messages_sent,
            messages_dropped=self._messages_dropped,
            bytes_sent=self._bytes_sent,
            dht_stores=self._dht_stores,
            dht_stores_accepted=self._dht_stores_accepted,
            dht_gets=self._dht_gets,
            dht_ops_dropped=self._dht_ops_dropped,
            live_peers=len(self._peers),
        )

    # -- used by MemoryTransport ---------------------------------------------------------------

    def _cut(self, a: str, b: str) -> bool:
        """Whether a partition separates ``a`` from ``b``."""
        group_of = self._group_of
        return group_of is not None and group_of.get(a, -1) != group_of.get(b, -1)

    def _lost_to_cut(self, source: str, target: str) -> bool:
        """Whether a message that already crossed the wire is lost to a partition (and count it)."""
        if self._cut(source, target):
            self._messages_dropped += 1
            return True
        return False

    def _reachable(self, source: str, target: str) -> MemoryTransport | None:
        """The live transport ``source`` can reach as ``target``, or None."""
        remote = self._peers.get(target)
        return None if remote is None or self._cut(source, target) else remote

    def _transmit(self, nbytes: int) -> float | None:
        """Draw one message's fate: its delay in seconds, or None when ``drop_rate`` loses it."""
        self._messages_sent += 1
        self._bytes_sent += nbytes
        faults = self._faults
        if faults.drop_rate > 0.0 and self._rng.random() < faults.drop_rate:
            self._messages_dropped += 1
            return None
        return self._delay()

    def _transmit_between(self, source: str, target: str, nbytes: int) -> float | None:
        """Like ``_transmit`` for a stream item, which a partition also loses."""
        delay = self._transmit(nbytes)
        return None if delay is None or self._lost_to_cut(source, target) else delay

    def _delay(self) -> float:
        faults = self._faults
        if faults.max_delay == 0.0:
            return 0.0  # no RNG draw, so a perfect network costs nothing per message
        return self._rng.uniform(faults.min_delay, faults.max_delay)

    async def _hop(self, nbytes: int) -> bool:
        """Carry one RPC message: wait its delay and return whether it arrived."""
        delay = self._transmit(nbytes)
        if delay is None:
            return False
        if delay > 0.0:
            await asyncio.sleep(delay)
        return True

    async def _dht_trip(self) -> bool:
        """Wait one DHT operation's delay and return whether it was carried out (not dropped)."""
        faults = self._faults
        if faults.is_perfect:
            return True
        # Draw both before waiting, so the RNG sequence doesn't depend on how the sleeps interleave.
        dropped = faults.drop_rate > 0.0 and self._rng.random() < faults.drop_rate
        delay = self._delay()
        if delay > 0.0:
            await asyncio.sleep(delay)  # a lost lookup does not fail instantly either
        if dropped:
            self._dht_ops_dropped += 1
        return not dropped

    def _unregister(self, transport: MemoryTransport) -> None:
        if self._peers.get(transport.peer_id) is transport:
            del self._peers[transport.peer_id]
