"""The behaviour every ``Transport`` must show, as a reusable test base.

A transport's test module subclasses ``TransportContract``, sets ``__test__ = True`` and
implements ``run``: create two connected transports, run the scenario on them, and always shut
them down. Scenarios use only the ``Transport`` interface, so the same tests check the in-memory
transport under virtual time and the real one over loopback; every wall-clock wait stays well
under two seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from swarmnet.errors import PeerUnreachable, ProtocolError, RemotePeerError, RequestTimeout, TransportClosed
from swarmnet.transport.base import Transport

__all__ = ["Scenario", "TransportContract"]

Scenario = Callable[[Transport, Transport], Awaitable[None]]

TTL = 60.0  # seconds a value lives in the scenarios that do not test expiry


async def _items(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


class TransportContract:
    """Tests every transport must pass. Subclasses implement ``run`` and set ``__test__ = True``."""

    __test__ = False

    def run(self, scenario: Scenario) -> None:
        """Create two connected transports ``a`` and ``b``, await ``scenario(a, b)``, then shut both down."""
        raise NotImplementedError

    # -- DHT ---------------------------------------------------------------------------------

    def test_store_and_get_plain_value(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            expires_at = a.clock.time() + TTL
            assert await a.store("contract/plain", b"value", expires_at)
            found = await b.get("contract/plain")
            assert list(found) == [None]
            assert found[None].value == b"value"
            assert found[None].expires_at == pytest.approx(expires_at)
            assert await b.get("contract/missing") == {}

        self.run(scenario)

    def test_subkeys_from_two_writers(self) -> None:
        # Subkeys that are not peer ids: the real DHT reserves peer-id subkeys for signed records.
        async def scenario(a: Transport, b: Transport) -> None:
            expires_at = a.clock.time() + TTL
            assert await a.store("contract/dict", b"from a", expires_at, subkey="writer-a")
            assert await b.store("contract/dict", b"from b", expires_at, subkey="writer-b")
            for reader in (a, b):
                found = await reader.get("contract/dict")
                assert {subkey: v.value for subkey, v in found.items()} == {
                    "writer-a": b"from a",
                    "writer-b": b"from b",
                }

        self.run(scenario)

    def test_newer_expiry_replaces_older_and_older_is_refused(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            now = a.clock.time()
            assert await a.store("contract/versions", b"first", now + TTL)
            assert await b.store("contract/versions", b"second", now + 2 * TTL)
            assert not await a.store("contract/versions", b"stale", now + 1.5 * TTL)
            found = await a.get("contract/versions")
            assert found[None].value == b"second"
            # The same rule holds per subkey.
            assert await a.store("contract/versions-dict", b"first", now + TTL, subkey="s")
            assert await b.store("contract/versions-dict", b"second", now + 2 * TTL, subkey="s")
            assert not await a.store("contract/versions-dict", b"stale", now + 1.5 * TTL, subkey="s")
            assert (await b.get("contract/versions-dict"))["s"].value == b"second"

        self.run(scenario)

    def test_expired_values_vanish(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            now = a.clock.time()
            expires_at = now + 1.5  # long enough to read it back on a loaded 2-core machine
            assert not await a.store("contract/past", b"too late", now - 1.0)
            assert await a.store("contract/short", b"brief", expires_at)
            assert await a.store("contract/short-dict", b"brief", expires_at, subkey="s")
            assert (await b.get("contract/short"))[None].value == b"brief"
            await asyncio.sleep(expires_at - a.clock.time() + 0.2)
            assert await b.get("contract/short") == {}
            assert await b.get("contract/short-dict") == {}
            assert await b.get("contract/past") == {}

        self.run(scenario)

    # -- unary RPC ---------------------------------------------------------------------------

    def test_unary_round_trip_reports_caller(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            callers: list[str] = []

            async def shout(caller: str, request: bytes) -> bytes:
                callers.append(caller)
                return request.upper() + b"!"

            await b.add_unary_handler("contract.shout", shout)
            assert await a.call_unary(b.peer_id, "contract.shout", b"hello") == b"HELLO!"
            assert await a.call_unary(b.peer_id, "contract.shout", b"") == b"!"
            assert callers == [a.peer_id, a.peer_id]

        self.run(scenario)

    def test_remote_handler_error_is_remote_peer_error(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            async def broken(caller: str, request: bytes) -> bytes:
                raise ValueError("boom: handler failed")

            await b.add_unary_handler("contract.broken", broken)
            with pytest.raises(RemotePeerError, match="boom"):
                await a.call_unary(b.peer_id, "contract.broken", b"x")

        self.run(scenario)

    def test_unknown_method_fails(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            with pytest.raises((PeerUnreachable, RemotePeerError)):
                await a.call_unary(b.peer_id, "contract.nobody-serves-this", b"x", timeout=1.0)

        self.run(scenario)

    def test_slow_handler_times_out(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            async def slow(caller: str, request: bytes) -> bytes:
                await asyncio.sleep(30.0)
                return request

            await b.add_unary_handler("contract.slow", slow)
            with pytest.raises(RequestTimeout):
                await a.call_unary(b.peer_id, "contract.slow", b"x", timeout=0.5)

        self.run(scenario)

    def test_oversized_request_is_refused_before_sending(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            calls: list[int] = []

            async def record(caller: str, request: bytes) -> bytes:
                calls.append(len(request))
                return b"ok"

            await b.add_unary_handler("contract.record", record)
            with pytest.raises(ProtocolError):
                await a.call_unary(b.peer_id, "contract.record", bytes(a.limits.max_message_bytes + 1))
            assert calls == []
            assert await a.call_unary(b.peer_id, "contract.record", b"small") == b"ok"
            assert calls == [5]

        self.run(scenario)

    # -- streaming ---------------------------------------------------------------------------

    def test_stream_echo_with_transform(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            callers: list[str] = []

            async def upper(caller: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
                callers.append(caller)
                async for request in requests:
                    yield request.upper()

            await b.add_stream_handler("contract.upper", upper)
            sent = [b"alpha", b"beta", b"", b"gamma", b"delta"]
            received = [item async for item in a.call_stream(b.peer_id, "contract.upper", _items(*sent))]
            assert received == [item.upper() for item in sent]
            assert callers == [a.peer_id]

        self.run(scenario)

    def test_stream_handler_error_is_remote_peer_error(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            async def fail_after_one(caller: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
                async for request in requests:
                    yield request
                    raise RuntimeError("boom: stream handler failed")

            await b.add_stream_handler("contract.fail", fail_after_one)
            received: list[bytes] = []

            async def consume() -> None:
                async for item in a.call_stream(b.peer_id, "contract.fail", _items(b"one", b"two")):
                    received.append(item)

            with pytest.raises(RemotePeerError, match="boom"):
                await consume()
            assert received == [b"one"]

        self.run(scenario)

    # -- lifecycle ---------------------------------------------------------------------------

    def test_operations_after_shutdown_raise_transport_closed(self) -> None:
        async def scenario(a: Transport, b: Transport) -> None:
            async def echo(caller: str, request: bytes) -> bytes:
                return request

            await a.shutdown()
            await a.shutdown()  # idempotent
            expires_at = b.clock.time() + TTL
            with pytest.raises(TransportClosed):
                await a.store("contract/closed", b"x", expires_at)
            with pytest.raises(TransportClosed):
                await a.get("contract/closed")
            with pytest.raises(TransportClosed):
                await a.add_unary_handler("contract.echo", echo)
            with pytest.raises(TransportClosed):
                await a.call_unary(b.peer_id, "contract.echo", b"x", timeout=1.0)
            with pytest.raises(TransportClosed):
                async for _ in a.call_stream(b.peer_id, "contract.echo", _items(b"x"), timeout=1.0):
                    pass
            # The other peer is unaffected.
            assert await b.store("contract/open", b"y", expires_at)

        self.run(scenario)
