"""The real transport: hivemind's Kademlia DHT and its go-libp2p daemon.

hivemind runs the DHT in a forked process that owns a ``p2pd`` daemon; we talk to the DHT through
its pipe and to the daemon through a replica ``P2P`` client in our own event loop. The daemon is
started with this peer's Ed25519 key, so its libp2p peer id is the swarmnet peer id, and libp2p
authenticates RPC callers for us.

RPC runs over libp2p streams with swarmnet framing (``framing.py``): a unary call is a stream
with one request and one response, so both kinds share one code path and one size limit.

The DHT process and its daemon live in their own session (``helper_session.py``): a stop signal to
our process group (Ctrl+C, ``kill -- -PGID``) reaches only us, and we stop them in order after we
have said goodbye through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import hivemind
import psutil
from hivemind.p2p import P2P, P2PDaemonError, PeerID
from hivemind.p2p.p2p_daemon_bindings.utils import ControlFailure, DispatchFailure
from hivemind.utils.multiaddr import Multiaddr

from swarmnet.clock import Clock, SystemClock
from swarmnet.errors import (
    ConfigError,
    PeerUnreachable,
    ProtocolError,
    RequestTimeout,
    StartupError,
    TransportClosed,
)
from swarmnet.identity import Identity
from swarmnet.transport.base import StoredValue, StreamHandler, Transport, TransportLimits, UnaryHandler
from swarmnet.transport.helper_session import forking_into_own_session
from swarmnet.transport.hivemind_validator import SwarmnetRecordValidator
from swarmnet.transport.orphan_guard import exit_when_orphaned, stop_and_exit
from swarmnet.transport.rpc_streams import call_over_stream, serve_stream, unary_as_stream

__all__ = ["HivemindConfig", "HivemindTransport"]

logger = logging.getLogger(__name__)

# A DHT process stops well within this once asked; one still running after it is stuck, and we kill it.
_DHT_STOP_SECONDS = 3.0
_DAEMON_POLL_SECONDS = 0.05  # how soon a DHT call notices that the p2p daemon has exited
PEER_ADDRESS_EXAMPLE = "/ip4/203.0.113.7/tcp/31337/p2p/12D3KooW..."  # a running peer: address and peer id
LISTEN_ADDRESS_EXAMPLE = "/ip4/0.0.0.0/tcp/31337"  # where to listen: no peer id
ANNOUNCE_ADDRESS_EXAMPLE = "/ip4/203.0.113.7/tcp/31337"  # a public address to advertise: no peer id
_DIAL_ERRORS = (P2PDaemonError, ControlFailure, DispatchFailure, ConnectionError, OSError, ValueError)


@dataclass(frozen=True, kw_only=True)
class HivemindConfig:
    """How to join the libp2p network."""

    initial_peers: tuple[str, ...] = ()  # multiaddrs of running peers; empty starts a new swarm
    host_maddrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)  # where to listen; 0.0.0.0 for other machines
    announce_maddrs: tuple[str, ...] = ()  # public addresses to advertise (behind NAT or port forwarding)
    client_mode: bool = False  # reach the DHT without serving it (status tools, monitors, NATed peers)
    use_relay: bool = True  # allow connections through libp2p circuit relays
    use_auto_relay: bool = False  # find and use relays automatically when we are not reachable
    startup_timeout: float = 30.0  # seconds to wait for the DHT and its p2p daemon to start
    limits: TransportLimits = field(default_factory=TransportLimits)
    # Our DHT node stores only swarmnet records of the protocol's key families (hivemind_validator.py).
    # False stores anything: only for a DHT that is not a swarm's, such as the transport's own tests.
    validate_records: bool = True

    def validate(self) -> None:
        """Raise ``ConfigError`` for addresses the p2p daemon would reject with a cryptic message."""
        self.limits.validate()
        if self.startup_timeout <= 0:
            raise ConfigError("startup_timeout must be positive")
        if not self.host_maddrs:
            raise ConfigError("at least one host multiaddr is needed to listen on")
        for addresses, example in (
            (self.initial_peers, PEER_ADDRESS_EXAMPLE),
            (self.host_maddrs, LISTEN_ADDRESS_EXAMPLE),
            (self.announce_maddrs, ANNOUNCE_ADDRESS_EXAMPLE),
        ):
            for address in addresses:
                _parse_multiaddr(address, example)
        for address in self.initial_peers:
            if "/p2p/" not in address:
                raise ConfigError(
                    f"initial peer {address!r} lacks its peer id: it must end with /p2p/<peer id>, as in "
                    f"{PEER_ADDRESS_EXAMPLE} (`swarmnet dht` prints its addresses in this form)"
                )
        for address in self.announce_maddrs:
            if address.rstrip("/").endswith("/tcp/0") or address.rstrip("/").endswith("/udp/0"):
                raise ConfigError(f"announce address {address!r} needs an explicit port, not 0")


def _parse_multiaddr(address: str, example: str) -> None:
    try:
        Multiaddr(address)
    except Exception as e:  # multiaddr raises several unrelated types for bad input
        raise ConfigError(f"{address!r} is not a valid multiaddr ({e}); example: {example}") from None


class HivemindTransport(Transport):
    """``Transport`` over a hivemind DHT process and its p2p daemon. Create with ``await create(...)``."""

    def __init__(self, dht: hivemind.DHT, p2p: P2P, peer_id: str, config: HivemindConfig) -> None:
        self._dht, self._p2p, self._peer_id, self._config = dht, p2p, peer_id, config
        self._clock = SystemClock()  # hivemind's DHT expiry uses wall-clock time too
        self._closed = False
        self._daemon = _find_daemon(dht)
        self._dial_failed = False  # hivemind may have leaked daemon connections that only gc closes
        self._daemon_gone_said = False

    @classmethod
    async def create(cls, identity: Identity, config: HivemindConfig | None = None) -> HivemindTransport:
        """Start a DHT node (with its p2p daemon) under ``identity`` and connect to it."""
        config = config or HivemindConfig()
        config.validate()
        with _libp2p_key_file(identity) as key_path:
            dht = _start_dht(config, key_path)
            try:
                await asyncio.to_thread(dht.wait_until_ready, config.startup_timeout)
            except Exception as e:
                _stop_dht(dht)
                raise StartupError(_explain_startup_failure(e, config)) from None
        try:
            await dht.run_coroutine(partial(exit_when_orphaned, parent_pid=os.getpid()), return_future=True)
            p2p = await dht.replicate_p2p()
        except BaseException:
            _stop_dht(dht)
            raise
        transport = cls(dht, p2p, identity.peer_id, config)
        logger.debug("joined the DHT as %s", identity.peer_id)
        return transport

    @property
    def peer_id(self) -> str:
        """This peer's id (also its libp2p peer id)."""
        return self._peer_id

    @property
    def clock(self) -> Clock:
        """Wall-clock time, as hivemind's DHT uses for expiry."""
        return self._clock

    @property
    def limits(self) -> TransportLimits:
        """Size and time limits."""
        return self._config.limits

    def daemon_running(self) -> bool:
        """Whether our p2p daemon still runs. A stop signal sent to every process of a service (systemd's
        default ``KillMode=control-group``) ends it together with us; then nothing can reach the network."""
        if self._daemon is None:
            return True  # not found at start: assume it runs (calls then end by their timeout)
        try:
            return bool(self._daemon.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    async def store(self, key: str, value: bytes, expires_at: float, subkey: str | None = None) -> bool:
        """Store in the DHT; ``False`` on refusal or network failure (at once when our p2p daemon is gone)."""
        self._check_open()
        if len(value) > self.limits.max_value_bytes:
            logger.debug("refusing to store %d bytes under %s", len(value), key)
            return False
        try:
            future = self._dht.store(key, value, expires_at, subkey=subkey, return_future=True)
            return bool(await self._dht_call(future))
        except Exception as e:
            logger.debug("DHT store under %s failed: %r", key, e)
            return False

    async def get(self, key: str) -> dict[str | None, StoredValue]:
        """Latest values under ``key``; ``{}`` when absent or on failure (at once when our p2p daemon is gone).
        Non-bytes values are skipped."""
        self._check_open()
        try:
            future = self._dht.get(key, latest=True, return_future=True)
            found = await self._dht_call(future)
        except Exception as e:
            logger.debug("DHT get of %s failed: %r", key, e)
            return {}
        if found is None:
            return {}
        if isinstance(found.value, dict):
            return {
                subkey: StoredValue(item.value, item.expiration_time)
                for subkey, item in found.value.items()
                if isinstance(subkey, str) and isinstance(item.value, bytes)
            }
        return {None: StoredValue(found.value, found.expiration_time)} if isinstance(found.value, bytes) else {}

    async def _dht_call(self, future: Any) -> Any:
        """The result of a call to the DHT process: ``TimeoutError`` after ``limits.default_timeout``, and
        ``ConnectionError`` as soon as our p2p daemon is gone (the call would never finish)."""
        call = asyncio.ensure_future(future)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.default_timeout
        try:
            while not call.done():
                if not self.daemon_running():
                    self._say_daemon_gone()
                    raise ConnectionError("the p2p daemon has exited")
                if loop.time() >= deadline:
                    raise TimeoutError
                await asyncio.wait({call}, timeout=min(_DAEMON_POLL_SECONDS, deadline - loop.time()))
        finally:
            call.cancel()  # no effect once done
        return call.result()

    async def add_unary_handler(self, method: str, handler: UnaryHandler) -> None:
        """Serve a request/response method."""
        await self.add_stream_handler(method, partial(unary_as_stream, handler))

    async def add_stream_handler(self, method: str, handler: StreamHandler) -> None:
        """Serve a streaming method over libp2p streams."""
        self._check_open()

        async def on_stream(info: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await serve_stream(handler, info.peer_id.to_base58(), reader, writer, self.limits.max_message_bytes)

        await self._p2p.add_binary_stream_handler(method, on_stream)

    async def call_unary(self, peer_id: str, method: str, request: bytes, *, timeout: float | None = None) -> bytes:
        """One request, one response."""
        if len(request) > self.limits.max_message_bytes:
            raise ProtocolError(f"request of {len(request)} bytes exceeds {self.limits.max_message_bytes}")
        responses = [r async for r in self.call_stream(peer_id, method, _one(request), timeout=timeout)]
        if len(responses) != 1:
            raise ProtocolError(f"{method} on {peer_id} answered {len(responses)} messages, expected one")
        return responses[0]

    async def call_stream(
        self, peer_id: str, method: str, requests: AsyncIterable[bytes], *, timeout: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Stream requests to ``peer_id`` while yielding its responses."""
        self._check_open()
        timeout = self.limits.default_timeout if timeout is None else timeout
        try:
            target = PeerID.from_base58(peer_id)
            async with asyncio.timeout(timeout):  # not wait_for: in Python 3.11 it can lose our cancellation
                _, reader, writer = await self._p2p.call_binary_stream_handler(target, method)
        except TimeoutError:
            self._dial_failed = True
            raise RequestTimeout(f"opening {method} on {peer_id} took over {timeout:.1f}s") from None
        except _DIAL_ERRORS as e:
            self._dial_failed = True
            # Not chained: hivemind's failed stream_open leaves its daemon connection in the
            # traceback's frames; dropping them lets shutdown() collect and close it in time.
            raise PeerUnreachable(f"cannot open {method} on {peer_id}: {e}") from None
        try:
            async for response in call_over_stream(reader, writer, requests, timeout, self.limits.max_message_bytes):
                yield response
        except ConnectionError as e:  # the daemon dropped the stream: the remote peer went away mid-call
            raise PeerUnreachable(f"{method} on {peer_id} broke: {type(e).__name__}: {e}") from None

    async def visible_addresses(self) -> list[str]:
        """Multiaddrs (with ``/p2p/<peer id>``) that other peers can dial."""
        self._check_open()
        return [str(addr) for addr in await self._p2p.get_visible_maddrs(latest=True)]

    async def shutdown(self) -> None:
        """Close the RPC client and stop the DHT process and its daemon."""
        if self._closed:
            return
        self._closed = True
        started = time.monotonic()
        if not self.daemon_running():
            self._say_daemon_gone()
        with contextlib.suppress(Exception):
            await self._p2p.shutdown()
        stopping = asyncio.ensure_future(asyncio.to_thread(_stop_dht, self._dht))
        if self._dial_failed:
            # Close daemon connections hivemind leaked on failed dials while our loop still runs; a full
            # collection is slow with torch loaded, so only when a dial failed, and beside the DHT's stop.
            gc.collect()
        await stopping
        logger.debug("transport %s shut down in %.2f s", self._peer_id, time.monotonic() - started)

    def _say_daemon_gone(self) -> None:
        if not self._daemon_gone_said:
            self._daemon_gone_said = True
            logger.info(
                "the p2p daemon has exited (a stop signal sent to every process of this service? with systemd, "
                "use KillMode=mixed): nothing more can be sent, and our DHT records expire on their own"
            )

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed(f"transport {self._peer_id} is shut down")


def _find_daemon(dht: hivemind.DHT) -> psutil.Process | None:
    """The DHT process's p2p daemon (its only child)."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(dht.pid).children():
            if child.name().startswith("p2pd"):
                return child
    return None


def _stop_dht(dht: hivemind.DHT) -> None:
    """Ask the DHT process to stop (it stops its daemon); kill both if it is stuck.

    Not hivemind's ``DHT.shutdown``: it waits forever on a daemon that a stop signal ended first, and its
    fallback, SIGTERM, is ignored by our DHT process (``helper_session.py``)."""
    if dht.is_alive():
        with contextlib.suppress(Exception):  # the pipe is closed if the process has just exited
            dht.run_coroutine(stop_and_exit, return_future=True)
        dht.join(_DHT_STOP_SECONDS)
    if dht.is_alive():
        logger.warning("DHT process did not stop within %.0f s; killing it and its p2p daemon", _DHT_STOP_SECONDS)
        _kill_tree(dht)


def _kill_tree(process: hivemind.DHT) -> None:
    """SIGKILL a DHT process and everything it started, then reap it."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    with contextlib.suppress(OSError, ValueError):
        process.kill()
    process.join(5)


@contextlib.contextmanager
def _libp2p_key_file(identity: Identity) -> Iterator[Path]:
    """The key in the p2p daemon's format, in a private temporary file removed once it has started."""
    key_dir = Path(tempfile.mkdtemp(prefix="swarmnet-key-"))  # mode 0700
    try:
        key_path = key_dir / "libp2p.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(identity.libp2p_private_key())
        yield key_path
    finally:
        shutil.rmtree(key_dir, ignore_errors=True)


def _start_dht(config: HivemindConfig, key_path: Path) -> hivemind.DHT:
    """Fork hivemind's DHT process (it starts p2pd) in a session of its own; readiness is awaited by the caller."""
    with forking_into_own_session():
        return _new_dht(config, key_path)


def _new_dht(config: HivemindConfig, key_path: Path) -> hivemind.DHT:
    return hivemind.DHT(
        initial_peers=list(config.initial_peers) or None,
        start=True,
        client_mode=config.client_mode,
        host_maddrs=list(config.host_maddrs),
        announce_maddrs=list(config.announce_maddrs) or None,
        identity_path=str(key_path),
        # Our membership layer notices duplicate identities; hivemind's own check costs a second daemon.
        check_if_identity_free=False,
        use_relay=config.use_relay,
        use_auto_relay=config.use_auto_relay,
        startup_timeout=config.startup_timeout,
        record_validators=[SwarmnetRecordValidator()] if config.validate_records else [],
        await_ready=False,
    )


def _explain_startup_failure(error: Exception, config: HivemindConfig) -> str:
    reason = str(error) or type(error).__name__
    if "bootstrap" in reason and config.initial_peers:
        return (
            f"none of the initial peers answered ({', '.join(config.initial_peers)}): check that the address "
            "is right, that its node is running, and that its port is reachable from here"
        )
    return f"the p2p daemon failed to start: {reason}"


async def _one(item: bytes) -> AsyncIterator[bytes]:
    yield item
