"""Link probe on the in-memory transport (protocol) and between two real peers (a real figure)."""

from __future__ import annotations

import asyncio

import pytest

from swarmnet.clock import run_virtual
from swarmnet.errors import ConfigError, PeerUnreachable, RemotePeerError
from swarmnet.identity import Identity
from swarmnet.peers.link_probe import LinkProbeConfig, measure_upload_mbps, serve_link_probe
from swarmnet.transport.faults import FaultPlan
from swarmnet.transport.hivemind_transport import HivemindConfig, HivemindTransport
from swarmnet.transport.memory import MemoryNetwork

SMALL = LinkProbeConfig(payload_bytes=1 << 20, chunk_bytes=1 << 16, max_accept_bytes=1 << 21, timeout=10.0)


def test_measurement_follows_the_simulated_link() -> None:
    async def main() -> float:
        network = MemoryNetwork(faults=FaultPlan(min_delay=0.05, max_delay=0.05))
        sender, sink = network.add_peer(), network.add_peer()
        await serve_link_probe(sink, SMALL)
        return await measure_upload_mbps(sender, sink.peer_id, SMALL)

    # 1 MiB pipelined over a 50 ms link: open (50 ms) + last chunk (50 ms) + ack (50 ms) = 0.15 s.
    assert run_virtual(main()) == pytest.approx(8 * (1 << 20) / 0.15 / 1e6, rel=0.05)


def test_sink_refuses_probes_longer_than_it_accepts() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        sender, sink = network.add_peer(), network.add_peer()
        await serve_link_probe(
            sink, LinkProbeConfig(payload_bytes=1 << 16, chunk_bytes=1 << 16, max_accept_bytes=1 << 16)
        )
        with pytest.raises(RemotePeerError, match="longer than"):
            await measure_upload_mbps(sender, sink.peer_id, SMALL)

    run_virtual(main())


def test_a_peer_without_a_sink_is_unreachable_for_probing() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        sender, other = network.add_peer(), network.add_peer()
        with pytest.raises((PeerUnreachable, RemotePeerError)):
            await measure_upload_mbps(sender, other.peer_id, SMALL)

    run_virtual(main())


@pytest.mark.parametrize(
    "config",
    [
        LinkProbeConfig(chunk_bytes=0),
        LinkProbeConfig(payload_bytes=1, chunk_bytes=2),
        LinkProbeConfig(payload_bytes=4, chunk_bytes=1, max_accept_bytes=2),
        LinkProbeConfig(timeout=0),
    ],
)
def test_inconsistent_sizes_are_refused(config: LinkProbeConfig) -> None:
    with pytest.raises(ConfigError):
        config.validate()


@pytest.mark.multiprocess
def test_two_real_peers_measure_loopback_bandwidth() -> None:
    async def main() -> float:
        sink = await HivemindTransport.create(Identity.generate())
        try:
            config = HivemindConfig(initial_peers=tuple(await sink.visible_addresses()))
            sender = await HivemindTransport.create(Identity.generate(), config)
            try:
                await serve_link_probe(sink, SMALL)
                return await measure_upload_mbps(sender, sink.peer_id, SMALL)
            finally:
                await sender.shutdown()
        finally:
            await sink.shutdown()

    mbps = asyncio.run(main())
    print(f"loopback upload through two p2p daemons: {mbps:.0f} Mbit/s")
    assert mbps > 10  # loopback through libp2p moves hundreds of Mbit/s; 10 catches a broken measurement
