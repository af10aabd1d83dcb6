"""A hand-driven federated client: it registers, polls and submits whatever update a test chooses.

What a foreign implementation (or an attacker) does on the wire: the gRPC stubs, a hand-built and
hand-signed update header, any claimed sample count and any payload. Only the transport (the
``Connection`` stub and its session metadata) is shared with the SDK.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import torch

from swarmnet.compression import get_codec
from swarmnet.federated import Connection
from swarmnet.federated.signing import update_message
from swarmnet.identity import Identity
from swarmnet.proto import federated_pb2 as pb

__all__ = ["RawClient", "serve_rounds", "serving"]


class RawClient:
    """One registered identity that sends the dense fp32 update it is told to, claiming ``samples``."""

    def __init__(self, address: str, samples: int = 10, secure_aggregation: bool = False) -> None:
        self.connection = Connection(address, Identity.generate())
        self.samples = samples
        self.train_loss = 1.0  # the training loss it reports with each update (not signed)
        capabilities = pb.Capabilities(samples=samples, codecs=["none"], secure_aggregation=secure_aggregation)
        self.connection.register(capabilities)

    @property
    def client_id(self) -> str:
        """This client's id at the coordinator."""
        return self.connection.client_id

    def task(self, wait_s: float = 1.0) -> pb.TaskReply:
        """One long-poll."""
        return self.connection.task(wait_s)

    def submit(self, task: pb.TaskReply, delta: torch.Tensor) -> pb.SubmitReply:
        """Send ``delta`` (dense fp32) for ``task``'s round, signed, claiming ``self.samples``."""
        payload = get_codec("none").encode(delta.to(torch.float32))
        digest = hashlib.sha256(payload).digest()
        signed = update_message(
            round_nonce=task.round_nonce,
            round_=task.round,
            global_version=task.global_version,
            samples=self.samples,
            encoding="codec",
            payload_size=len(payload),
            payload_sha256=digest,
        )
        header = pb.UpdateHeader(
            client_id=self.client_id,
            round=task.round,
            global_version=task.global_version,
            samples=self.samples,
            payload_size=len(payload),
            payload_sha256=digest,
            encoding="codec",
            signature=self.connection.identity.sign(signed),
            train_loss=self.train_loss,
        )
        reply: pb.SubmitReply = self.connection.stub.SubmitUpdate(
            iter([pb.UpdateChunk(header=header, data=payload)]), timeout=10, metadata=self.connection.metadata()
        )
        return reply

    def close(self) -> None:
        """Close the channel."""
        self.connection.close()


def serve_rounds(
    clients: list[RawClient], delta_for: Callable[[RawClient, pb.TaskReply], torch.Tensor], stop: threading.Event
) -> threading.Thread:
    """Keep ``clients`` polling (so they stay active) and answer every task with ``delta_for``, until ``stop``.

    Runs in one daemon thread; a submission the round no longer takes is skipped (the test checks
    the coordinator's record, not each reply).
    """

    def body() -> None:
        while not stop.is_set():
            for client in clients:
                try:
                    task = client.task(0.05)
                    if task.kind == pb.TaskReply.TRAIN:
                        client.submit(task, delta_for(client, task))
                except grpc.RpcError:
                    time.sleep(0.05)  # the round moved on or the coordinator is stopping: poll again

    thread = threading.Thread(target=body, name="raw-clients", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def serving(clients: list[RawClient], delta_for: Callable[[RawClient, pb.TaskReply], torch.Tensor]) -> Iterator[None]:
    """``serve_rounds`` for the body of a ``with``; on leaving it, stop serving and close the clients."""
    stop = threading.Event()
    thread = serve_rounds(clients, delta_for, stop)
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        for client in clients:
            client.close()
