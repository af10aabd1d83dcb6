"""A client's side of one securely aggregated round (see ``swarmnet.federated.secagg``).

The key exchange runs before local training, so the coordinator's short phase deadlines only
ever wait on network round trips; the masked update follows training, then the survivors'
unmasking shares.
"""

from __future__ import annotations

from collections.abc import Callable

from swarmnet.federated.connection import Connection
from swarmnet.federated.secagg.client import SecAggClient
from swarmnet.federated.secagg.messages import AdvertisedKeys
from swarmnet.federated.secure_update import to_wire
from swarmnet.federated.update_encoder import SecureValues
from swarmnet.proto import federated_pb2 as pb

__all__ = ["run_secure_round", "secagg_context"]

Phase = pb.SecAggRequest


def secagg_context(run: str, round_: int, nonce: bytes) -> bytes:
    """The bytes every signature and key derivation of a round is bound to (the coordinator uses the same)."""
    return b"swarmnet-secagg\x00" + run.encode() + round_.to_bytes(8, "big") + nonce


def run_secure_round(
    connection: Connection,
    task: pb.TaskReply,
    train: Callable[[], tuple[SecureValues, int, float]],
    timeout: float,
) -> pb.SubmitReply:
    """Exchange keys, train (``train`` returns field words, samples, loss), submit masked, unmask."""
    config = task.config
    secagg = SecAggClient(
        connection.identity, secagg_context(connection.run, task.round, task.round_nonce), config.secagg_threshold
    )
    reply = connection.secagg(task.round, Phase.ADVERTISE, keys=secagg.advertise().to_bytes(), timeout=timeout)
    roster = [AdvertisedKeys.from_bytes(entry) for entry in reply.roster]
    reply = connection.secagg(task.round, Phase.SHARE, messages=secagg.share_keys(roster), timeout=timeout)
    shares = dict(reply.messages)
    values, samples, loss = train()
    masked = secagg.mask(values.words, shares)
    submitted = connection.submit(
        task, to_wire(masked, config.secagg_bits), samples=samples, encoding="secagg", train_loss=loss, timeout=timeout
    )
    reply = connection.secagg(task.round, Phase.COLLECT, timeout=timeout)
    answers = secagg.unmask(list(reply.survivors), list(reply.dropped))
    connection.secagg(task.round, Phase.UNMASK, messages=answers, timeout=timeout)
    return submitted
