"""Helpers for averaging tests on the in-memory transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

import torch

from swarmnet.averaging import Averager, AveragingConfig, MatchmakingConfig, Outcome
from swarmnet.averaging.messages import DataHeader, decode_message, encode_message
from swarmnet.errors import TransportClosed
from swarmnet.identity import Identity
from swarmnet.transport.memory import MemoryNetwork, MemoryTransport

FAST = AveragingConfig(
    run="t", matchmaking=MatchmakingConfig(target_group_size=4, min_group_size=2, min_wait=0.5, timeout=5.0)
)


@dataclass
class Peer:
    identity: Identity
    transport: MemoryTransport
    averager: Averager

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id


async def make_peers(network: MemoryNetwork, count: int, config: AveragingConfig = FAST) -> list[Peer]:
    peers = []
    for _ in range(count):
        identity = Identity.generate()
        transport = network.add_peer(identity.peer_id)
        averager = Averager(transport, identity, config)
        await averager.start()
        peers.append(Peer(identity, transport, averager))
    return peers


def with_group(config: AveragingConfig, target: int, minimum: int = 2, **changes: object) -> AveragingConfig:
    matchmaking = replace(config.matchmaking, target_group_size=target, min_group_size=minimum)
    return replace(config, matchmaking=matchmaking, **changes)  # type: ignore[arg-type]


async def average(
    peers: Sequence[Peer], tensors: Sequence[list[torch.Tensor]], round_id: int = 0, weights: Sequence[float] = ()
) -> list[Outcome]:
    weights = list(weights) or [1.0] * len(peers)
    steps = [p.averager.step(t, round_id=round_id, weight=w) for p, t, w in zip(peers, tensors, weights, strict=True)]
    return list(await asyncio.gather(*steps))


Tamper = Callable[[DataHeader, memoryview], bytes | tuple[DataHeader, bytes] | None]


def intercept(peer: Peer, tamper: Tamper) -> None:
    """Pass every data message ``peer`` sends through ``tamper``: it returns a new payload, a new header and
    payload, or None to keep the message.

    ``tamper`` may also raise (e.g. after killing the peer) to stop the send.
    """
    original = peer.transport.call_unary

    async def call_unary(target: str, method: str, request: bytes, *, timeout: float | None = None) -> bytes:
        if method.endswith(".data"):
            header, payload = decode_message(request, DataHeader)
            request = _rewritten(request, header, tamper(header, payload))
        return await original(target, method, request, timeout=timeout)

    original_stream = peer.transport.call_stream

    async def tampered(requests: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for request in requests:
            header, payload = decode_message(request, DataHeader)
            yield _rewritten(request, header, tamper(header, payload))

    def call_stream(
        target: str, method: str, requests: AsyncIterable[bytes], *, timeout: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        return original_stream(target, method, tampered(requests), timeout=timeout)

    peer.transport.call_unary = call_unary  # type: ignore[method-assign,assignment]
    peer.transport.call_stream = call_stream  # type: ignore[method-assign,assignment]


def _rewritten(request: bytes, header: DataHeader, replacement: bytes | tuple[DataHeader, bytes] | None) -> bytes:
    if replacement is None:
        return request
    if isinstance(replacement, tuple):
        return encode_message(*replacement)
    return encode_message(header, replacement)


def kill_when(network: MemoryNetwork, peer: Peer, condition: Callable[[DataHeader], bool]) -> None:
    """Kill ``peer`` the moment it is about to send a data message matching ``condition``."""

    def tamper(header: DataHeader, payload: memoryview) -> bytes | None:
        if condition(header):
            network.kill(peer.peer_id)
            raise TransportClosed("killed by the test")
        return None

    intercept(peer, tamper)


def random_inputs(count: int, shapes: Sequence[tuple[int, ...]], seed: int = 0) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(*shape, generator=gen) for shape in shapes] for _ in range(count)]


def mean_of(inputs: Sequence[list[torch.Tensor]], weights: Sequence[float] | None = None) -> list[torch.Tensor]:
    w = torch.tensor(list(weights) if weights else [1.0] * len(inputs))
    return [
        (torch.stack([t[i].float() for t in inputs]) * w.view(-1, *[1] * inputs[0][i].dim())).sum(0) / w.sum()
        for i in range(len(inputs[0]))
    ]
