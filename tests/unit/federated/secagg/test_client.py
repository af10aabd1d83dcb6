"""A client's checks on what the coordinator relays: forged rosters, bad shares, bad requests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from swarmnet.errors import ConfigError, ProtocolError
from swarmnet.federated.secagg import AdvertisedKeys, SecAggClient
from tests.unit.federated.secagg.simulation import CONTEXT, make_clients, seeded_identity

N, THRESHOLD, LENGTH = 5, 4, 100

# (sorted client ids, this client's id) -> [survivors, dropped]
UnmaskRequest = Callable[[list[str], str], list[list[str]]]


def _advertised(seed: int = 0) -> tuple[list[SecAggClient], list[AdvertisedKeys]]:
    clients = make_clients(N, THRESHOLD, seed=seed)
    return clients, [c.advertise() for c in clients]


def _shared(seed: int = 0) -> tuple[list[SecAggClient], dict[str, dict[str, bytes]]]:
    """Clients that shared keys, and each client's inbox."""
    clients, roster = _advertised(seed)
    outboxes = {c.client_id: c.share_keys(roster) for c in clients}
    inboxes = {
        c.client_id: {s: out[c.client_id] for s, out in outboxes.items() if c.client_id in out} for c in clients
    }
    return clients, inboxes


def _vector() -> np.ndarray:
    return np.arange(LENGTH, dtype=np.uint32)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="context"):
        SecAggClient(seeded_identity(0), b"", THRESHOLD)
    with pytest.raises(ConfigError, match="threshold"):
        SecAggClient(seeded_identity(0), CONTEXT, 1)


def test_advertise_is_idempotent_and_signed() -> None:
    client = make_clients(1, 2)[0]
    assert client.advertise() is client.advertise()
    assert client.advertise().verify(CONTEXT)
    assert client.advertise().client_id == client.client_id


def test_a_forged_signature_in_the_roster_is_named() -> None:
    clients, roster = _advertised()
    victim = roster[2]
    roster[2] = dataclasses.replace(victim, cipher_key=roster[3].cipher_key)
    with pytest.raises(ProtocolError, match=f"{victim.client_id} carry a bad signature"):
        clients[0].share_keys(roster)


def test_a_client_id_not_matching_its_key_is_named() -> None:
    clients, roster = _advertised()
    impostor = seeded_identity(999).peer_id
    roster[1] = dataclasses.replace(roster[1], client_id=impostor)
    with pytest.raises(ProtocolError, match=f"client id {impostor} does not match"):
        clients[0].share_keys(roster)


def test_a_roster_from_another_round_is_rejected() -> None:
    clients, _ = _advertised()
    other_round = make_clients(N, THRESHOLD, context=CONTEXT + b"-next")
    with pytest.raises(ProtocolError, match="bad signature"):
        clients[0].share_keys([clients[0].advertise()] + [c.advertise() for c in other_round[1:]])


def test_a_signed_low_order_key_is_named() -> None:
    clients, roster = _advertised()
    # Signed by its rightful owner, but the all-zero point makes every shared secret zero.
    roster[3] = AdvertisedKeys.create(seeded_identity(3), CONTEXT, roster[3].cipher_key, bytes(32))
    with pytest.raises(ProtocolError, match=f"keys advertised by {roster[3].client_id} are unusable.*low-order"):
        clients[0].share_keys(roster)
    clients[0].share_keys(_advertised()[1])  # nothing was committed: a corrected roster still works


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda roster: [*roster, roster[1]], "appears twice"),
        (lambda roster: roster[1:], "does not include this client"),
        (lambda roster: roster[:3], "fewer than the threshold"),
        # A valid advertisement of the same identity, but with other keys (e.g. from an earlier try).
        (lambda roster: [SecAggClient(seeded_identity(0), CONTEXT, 2).advertise(), *roster[1:]], "other keys"),
    ],
)
def test_bad_rosters_are_rejected(edit: Callable[[list[AdvertisedKeys]], list[AdvertisedKeys]], message: str) -> None:
    clients, roster = _advertised()
    with pytest.raises(ProtocolError, match=message):
        clients[0].share_keys(edit(roster))


def test_a_tampered_share_is_named() -> None:
    clients, inboxes = _shared()
    me = clients[0].client_id
    sender = clients[1].client_id
    tampered = bytearray(inboxes[me][sender])
    tampered[-1] ^= 0x40
    with pytest.raises(ProtocolError, match=f"share from {sender} is invalid.*authentication"):
        clients[0].mask(_vector(), {**inboxes[me], sender: bytes(tampered)})


def test_a_share_for_someone_else_is_rejected() -> None:
    clients, inboxes = _shared()
    me, other, sender = (c.client_id for c in clients[:3])
    with pytest.raises(ProtocolError, match=f"share from {sender} is invalid"):
        clients[0].mask(_vector(), {**inboxes[me], sender: inboxes[other][sender]})


def test_a_reflected_share_is_rejected() -> None:
    # u -> v and v -> u share one symmetric key, so only the sender field exposes the reflection.
    clients, inboxes = _shared()
    me, peer = clients[0].client_id, clients[1].client_id
    reflected = inboxes[peer][me]
    with pytest.raises(ProtocolError, match=f"relayed from {peer} was sent by {me}"):
        clients[0].mask(_vector(), {**inboxes[me], peer: reflected})


def test_shares_from_strangers_or_ourselves_are_rejected() -> None:
    clients, inboxes = _shared()
    me = clients[0].client_id
    some_share = next(iter(inboxes[me].values()))
    for sender in (me, "stranger"):
        with pytest.raises(ProtocolError, match=f"from {sender}, who is not another client"):
            clients[0].mask(_vector(), {**inboxes[me], sender: some_share})


def test_too_few_shares_received_stop_masking() -> None:
    clients, inboxes = _shared()
    me = clients[0].client_id
    two = dict(list(inboxes[me].items())[:2])
    with pytest.raises(ProtocolError, match="only 3 clients shared keys"):
        clients[0].mask(_vector(), two)


def test_a_failed_mask_leaves_the_client_usable() -> None:
    clients, inboxes = _shared()
    me = clients[0].client_id
    with pytest.raises(ProtocolError):
        clients[0].mask(_vector(), {**inboxes[me], "stranger": b""})
    assert clients[0].mask(_vector(), inboxes[me]).shape == (LENGTH,)


def test_mask_keeps_the_shape_and_rejects_non_field_input() -> None:
    clients, inboxes = _shared()
    me = clients[0].client_id
    with pytest.raises(ValueError, match="uint32"):
        clients[0].mask(np.zeros(4, dtype=np.float32), inboxes[me])
    assert clients[0].mask(np.zeros((2, 5), dtype=np.uint32), inboxes[me]).shape == (2, 5)


def test_steps_out_of_order_are_refused() -> None:
    client = make_clients(1, 2)[0]
    with pytest.raises(ProtocolError, match="share_keys\\(\\) called out of order"):
        client.share_keys([])
    with pytest.raises(ProtocolError, match="mask\\(\\) called out of order"):
        client.mask(_vector(), {})
    clients, inboxes = _shared()
    with pytest.raises(ProtocolError, match="unmask\\(\\) called out of order"):
        clients[0].unmask([c.client_id for c in clients], [])
    with pytest.raises(ProtocolError, match="share_keys\\(\\) called out of order"):
        clients[0].share_keys([c.advertise() for c in clients])
    clients[0].mask(_vector(), inboxes[clients[0].client_id])
    with pytest.raises(ProtocolError, match="mask\\(\\) called out of order"):
        clients[0].mask(_vector(), inboxes[clients[0].client_id])


def _masked(seed: int = 0) -> tuple[SecAggClient, list[str]]:
    clients, inboxes = _shared(seed)
    clients[0].mask(_vector(), inboxes[clients[0].client_id])
    return clients[0], sorted(c.client_id for c in clients)


def test_unmask_returns_one_share_per_client_including_our_own() -> None:
    client, ids = _masked()
    answer = client.unmask(ids, [])
    assert sorted(answer) == ids
    assert all(len(share) == 71 for share in answer.values())


@pytest.mark.parametrize(
    ("request_of", "message"),
    [
        (lambda ids, me: [ids, [ids[0]]], "both surviving and dropped"),
        (lambda ids, me: [[*ids, ids[0]], []], "twice in one list"),
        (lambda ids, me: [[i for i in ids if i != me], [me]], "lists this client as dropped"),
        (lambda ids, me: [[*ids, "stranger"], []], "no shares of stranger"),
        (lambda ids, me: [ids[:3], ids[3:]], "only 3 clients survived"),
    ],
)
def test_bad_unmask_requests_are_refused(request_of: UnmaskRequest, message: str) -> None:
    client, ids = _masked()
    survivors, dropped = request_of(ids, client.client_id)
    with pytest.raises(ProtocolError, match=message):
        client.unmask(survivors, dropped)


def test_unmask_can_be_repeated_consistently() -> None:
    client, ids = _masked()
    others = [i for i in ids if i != client.client_id]
    survivors, dropped = [client.client_id, *others[:3]], others[3:]
    assert client.unmask(survivors, dropped) == client.unmask(survivors, dropped)
