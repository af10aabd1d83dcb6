"""Failed replicas are routed around; bad requests are refused while the server keeps serving."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

from swarmnet.errors import PeerUnreachable, ProtocolError
from swarmnet.remote import ClientConfig, Replica, RequestLimits, RoutingConfig, ServerConfig
from swarmnet.remote.wire import METHOD, encode_message, encode_tensors, parse_reply
from swarmnet.testing import FaultPlan, apoll_until, run_virtual
from tests.unit.remote.helpers import UID, NaNModule, mlp, swarm


def test_a_replica_killed_mid_call_is_replaced_by_another() -> None:
    x = torch.randn(3, 8)

    async def main() -> None:
        async with swarm([mlp(), mlp()]) as s:
            await s.caller.replicas(UID)  # look the replicas up before links get slow
            s.network.set_faults(FaultPlan(seed=1, min_delay=0.5, max_delay=1.0))  # each message is in flight a while
            chosen: list[str] = []
            choose = s.caller.router.choose

            def spy(*args: Any, **kwargs: Any) -> Replica | None:
                replica = choose(*args, **kwargs)
                if replica is not None:
                    chosen.append(replica.peer_id)
                return replica

            s.caller.router.choose = spy  # type: ignore[method-assign]
            call = asyncio.create_task(s.caller.forward(UID, [x]))
            await apoll_until(lambda: _truthy(chosen), timeout=10, what="the first replica chosen")
            s.network.kill(chosen[0])  # while the request is on its way
            out = await asyncio.wait_for(call, 120)
            assert torch.allclose(out, mlp()(x), atol=1e-6)
            assert chosen[1] != chosen[0]
            stats = s.caller.statistics()
            assert stats.calls == 1
            assert stats.failed_attempts == 1
            assert s.caller.router.banned(chosen[0], s.network.clock.time())

    run_virtual(main())


async def _truthy(items: list[str]) -> bool:
    return bool(items)


def test_non_finite_replies_are_rejected_and_retried_elsewhere() -> None:
    x = torch.randn(2, 8)

    async def main() -> None:
        fast = ServerConfig(initial_throughput=1e4)  # both look equally fast until the broken one is called
        async with swarm([NaNModule(), mlp()], server=fast, client=ClientConfig(routing=RoutingConfig(seed=3))) as s:
            for _ in range(30):  # calls go to either replica at random, until the broken one was tried
                out = await s.caller.forward(UID, [x])
                assert torch.isfinite(out).all()
                if s.caller.statistics().failed_attempts:
                    break
            assert s.caller.router.banned(s.server_ids[0], s.network.clock.time())
            for _ in range(5):  # and while it is banned, it is not tried again
                await s.caller.forward(UID, [x])
            assert s.caller.statistics().failed_attempts == 1

    run_virtual(main())


def test_only_broken_replicas_make_the_call_fail() -> None:
    async def main() -> None:
        async with swarm([NaNModule()]) as s:
            with pytest.raises(PeerUnreachable, match="no replica"):
                await s.caller.forward(UID, [torch.randn(1, 8)])

    run_virtual(main())


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"uid": "RUN.other", "op": "forward"}, "not hosted"),
        ({"uid": UID, "op": "delete"}, "unknown op"),
        ({"uid": UID, "op": "forward", "codec": "zip"}, "unknown codec"),
        ({"uid": UID, "op": "forward", "tensors": [{"nbytes": 0, "shape": [1, 8], "dtype": "int64"}]}, "dtype"),
        ({"uid": UID, "op": "forward", "tensors": [{"nbytes": 0, "shape": [4096, 8], "dtype": "float32"}]}, "samples"),
        (
            {"uid": UID, "op": "forward", "tensors": [{"nbytes": 0, "shape": [1, 10**9], "dtype": "float32"}]},
            "elements",
        ),
        ({"uid": UID, "op": "forward", "tensors": [{"nbytes": 10**6, "shape": [1, 8], "dtype": "float32"}]}, "add up"),
        ({"uid": UID, "op": "forward", "tensors": [{"shape": [1]}]}, "malformed tensor"),
        ({"uid": UID, "op": "backward", "tensors": []}, "takes 2 tensors"),
    ],
)
def test_malformed_and_oversized_requests_are_refused_and_serving_goes_on(
    header: dict[str, object], reason: str
) -> None:
    x = torch.randn(2, 8)

    async def main() -> None:
        async with swarm([mlp()]) as s:
            transport = s.network.add_peer()
            raw = await transport.call_unary(s.server_ids[0], METHOD, encode_message(header))
            reply = parse_reply(raw, RequestLimits())
            assert reply.error is not None
            assert reason in reply.error
            assert await transport.call_unary(s.server_ids[0], METHOD, b"junk") != b""
            assert torch.allclose(await s.caller.forward(UID, [x]), mlp()(x), atol=1e-6)
            assert sum(s.servers[0].statistics().refused.values()) == 2

    run_virtual(main())


def test_a_payload_that_disagrees_with_its_declared_shape_is_refused() -> None:
    async def main() -> None:
        async with swarm([mlp()]) as s:
            metas, payloads = encode_tensors([torch.randn(2, 8)], "none")
            metas[0]["shape"] = [4, 4]
            raw = await s.network.add_peer().call_unary(
                s.server_ids[0], METHOD, encode_message({"uid": UID, "op": "forward", "tensors": metas}, payloads)
            )
            error = parse_reply(raw, RequestLimits()).error
            assert error is not None
            assert "bad tensor payload" in error

    run_virtual(main())


def test_a_request_over_the_servers_limits_raises_its_reason_on_the_caller() -> None:
    small = ServerConfig(limits=RequestLimits(max_samples=4))

    async def main() -> None:
        async with swarm([mlp(), mlp()], server=small) as s:
            with pytest.raises(ProtocolError, match="exceed the limit of 4"):
                await s.caller.forward(UID, [torch.randn(5, 8)])
            assert s.caller.statistics().attempts == 1  # refused requests are not retried elsewhere
            assert (await s.caller.forward(UID, [torch.randn(4, 8)])).shape == (4, 8)

    run_virtual(main())


def test_a_wrong_input_width_is_a_clear_error_and_the_server_goes_on() -> None:
    async def main() -> None:
        async with swarm([mlp()]) as s:
            with pytest.raises(ProtocolError, match="RuntimeError"):
                await s.caller.forward(UID, [torch.randn(2, 5)])
            assert (await s.caller.forward(UID, [torch.randn(2, 8)])).shape == (2, 8)

    run_virtual(main())


def test_requests_queued_when_a_server_stops_go_to_another_replica() -> None:
    x = torch.randn(2, 8)

    async def main() -> None:
        async with swarm([mlp(), mlp()], server=ServerConfig(max_batch=8, max_wait=5.0)) as s:
            first = asyncio.create_task(s.caller.forward(UID, [x]))
            second = asyncio.create_task(s.caller.forward(UID, [x]))  # company, so the batch waits max_wait

            async def queued_on() -> list[int]:
                return [i for i, srv in enumerate(s.servers) if srv.statistics().modules[UID].queue]

            busy = await apoll_until(queued_on, timeout=10, what="calls queued on a replica")
            for index in busy:
                await s.servers[index].stop()
            outputs = await asyncio.wait_for(asyncio.gather(first, second), 60)
            assert all(torch.allclose(out, mlp()(x), atol=1e-6) for out in outputs)

    run_virtual(main())


def test_a_message_over_the_byte_limit_is_refused_before_parsing() -> None:
    tight = ServerConfig(limits=RequestLimits(max_request_bytes=4096))

    async def main() -> None:
        async with swarm([mlp()], server=tight) as s:
            with pytest.raises(ProtocolError, match="exceeds the limit of 4096"):
                await s.caller.forward(UID, [torch.randn(256, 8)])  # 8 KiB of activations
            assert (await s.caller.forward(UID, [torch.randn(4, 8)])).shape == (4, 8)

    run_virtual(main())
