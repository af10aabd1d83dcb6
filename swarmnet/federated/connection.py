"""The client's end of the wire: channel, registration, and the chunked update and adapter streams."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import torch

from swarmnet.errors import ProtocolError
from swarmnet.federated.loopback import is_local_target
from swarmnet.federated.signing import PROTOCOL_VERSION, SESSION_METADATA, register_message, update_message
from swarmnet.federated.vector import AdapterSchema
from swarmnet.identity import Identity
from swarmnet.proto import federated_pb2 as pb
from swarmnet.proto import federated_pb2_grpc as pb_grpc

__all__ = ["GRPC_OPTIONS", "Connection", "GlobalAdapter", "TlsSettings"]

logger = logging.getLogger(__name__)

# Chunks are 1 MiB by default; both ends allow 8 MiB messages so larger chunk choices still pass.
GRPC_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_receive_message_length", 8 << 20),
    ("grpc.max_send_message_length", 8 << 20),
]
_MAX_ADAPTER_BYTES = 1 << 31


@dataclass(frozen=True, kw_only=True)
class TlsSettings:
    """Verify the coordinator's certificate against ``root_cert`` (PEM); ``server_name`` overrides the host."""

    root_cert: Path
    server_name: str | None = None


@dataclass(frozen=True)
class GlobalAdapter:
    """A global adapter as fetched: flat float32 values, its schema and version."""

    version: int
    round: int
    vector: torch.Tensor
    schema: AdapterSchema


class Connection:
    """One client's channel to a coordinator; every call raises ``grpc.RpcError`` on failure."""

    def __init__(
        self, address: str, identity: Identity, *, tls: TlsSettings | None = None, chunk_bytes: int = 1 << 20
    ) -> None:
        self.identity = identity
        self.chunk_bytes = chunk_bytes
        if tls is None:
            if not is_local_target(address):
                logger.warning(
                    "connecting to %s in plaintext: the session and operator tokens cross the network readable "
                    "by anyone on the path; give TlsSettings for any coordinator beyond this machine",
                    address,
                )
            self._channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls.root_cert.read_bytes())
            options = list(GRPC_OPTIONS)
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self.stub = pb_grpc.CoordinatorStub(self._channel)  # type: ignore[no-untyped-call]
        self.session = b""
        self.run = ""

    @property
    def client_id(self) -> str:
        """This client's id (the peer id of its key)."""
        return self.identity.peer_id

    def metadata(self) -> tuple[tuple[str, bytes], ...]:
        """Call metadata carrying the session token."""
        return ((SESSION_METADATA, self.session),)

    def register(self, capabilities: pb.Capabilities, token: str = "", timeout: float = 30.0) -> pb.RegisterReply:
        """Register (or re-register) this client's key; keeps the session token."""
        timestamp_ms, nonce = int(time.time() * 1000), os.urandom(16)
        public_key = self.identity.public_key
        request = pb.RegisterRequest(
            protocol_version=PROTOCOL_VERSION,
            public_key=public_key,
            timestamp_ms=timestamp_ms,
            nonce=nonce,
            token=token,
            capabilities=capabilities,
            signature=self.identity.sign(register_message(public_key, timestamp_ms, nonce, token)),
        )
        reply: pb.RegisterReply = self.stub.Register(request, timeout=timeout)
        self.session, self.run = reply.session, reply.run
        return reply

    def task(self, wait_s: float) -> pb.TaskReply:
        """Long-poll for a task."""
        request = pb.TaskRequest(client_id=self.client_id, wait_s=wait_s)
        reply: pb.TaskReply = self.stub.GetTask(request, timeout=wait_s + 30.0, metadata=self.metadata())
        return reply

    def fetch(self, timeout: float = 120.0) -> GlobalAdapter:
        """Stream the global adapter in and check its size and digest."""
        stream = self.stub.FetchAdapter(
            pb.FetchRequest(client_id=self.client_id), timeout=timeout, metadata=self.metadata()
        )
        header: pb.AdapterHeader | None = None
        data = bytearray()
        for chunk in stream:
            if header is None:
                header = chunk.header
                if header.size > _MAX_ADAPTER_BYTES or header.size % 4:
                    raise ProtocolError(f"coordinator announced an adapter of {header.size} B")
            data += chunk.data
            if len(data) > header.size:
                raise ProtocolError("coordinator sent more adapter data than it announced")
        if header is None or len(data) != header.size or hashlib.sha256(data).digest() != header.sha256:
            raise ProtocolError("global adapter arrived truncated or corrupted (size or SHA-256 mismatch)")
        schema = AdapterSchema.from_pairs([(s.name, list(s.shape)) for s in header.schema])
        vector = torch.frombuffer(bytearray(data), dtype=torch.float32) if data else torch.zeros(0)
        if vector.numel() != schema.numel:
            raise ProtocolError(f"adapter has {vector.numel()} values, its schema {schema.numel}")
        return GlobalAdapter(version=header.version, round=header.round, vector=vector, schema=schema)

    def submit(
        self,
        task: pb.TaskReply,
        payload: bytes,
        *,
        samples: int,
        encoding: str,
        train_loss: float,
        timeout: float = 120.0,
    ) -> pb.SubmitReply:
        """Sign and stream an update for ``task``'s round."""
        digest = hashlib.sha256(payload).digest()
        signed = update_message(
            round_nonce=task.round_nonce,
            round_=task.round,
            global_version=task.global_version,
            samples=samples,
            encoding=encoding,
            payload_size=len(payload),
            payload_sha256=digest,
        )
        header = pb.UpdateHeader(
            client_id=self.client_id,
            round=task.round,
            global_version=task.global_version,
            samples=samples,
            payload_size=len(payload),
            payload_sha256=digest,
            encoding=encoding,
            train_loss=train_loss,
            signature=self.identity.sign(signed),
        )
        reply: pb.SubmitReply = self.stub.SubmitUpdate(
            self._chunks(header, payload), timeout=timeout, metadata=self.metadata()
        )
        return reply

    def _chunks(self, header: pb.UpdateHeader, payload: bytes) -> Iterator[pb.UpdateChunk]:
        step = self.chunk_bytes
        yield pb.UpdateChunk(header=header, data=payload[:step])
        for offset in range(step, len(payload), step):
            yield pb.UpdateChunk(data=payload[offset : offset + step])

    def secagg(
        self,
        round_: int,
        phase: pb.SecAggRequest.Phase,
        *,
        keys: bytes = b"",
        messages: dict[str, bytes] | None = None,
        timeout: float,
    ) -> pb.SecAggReply:
        """Send one secure-aggregation phase message and wait for the reply."""
        request = pb.SecAggRequest(
            client_id=self.client_id, round=round_, phase=phase, keys=keys, messages=messages or {}
        )
        reply: pb.SecAggReply = self.stub.SecAgg(request, timeout=timeout, metadata=self.metadata())
        return reply

    def status(self, timeout: float = 10.0) -> pb.StatusReply:
        """The coordinator's status (no session needed)."""
        reply: pb.StatusReply = self.stub.Status(pb.StatusRequest(), timeout=timeout)
        return reply

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()
