"""Secure aggregation over gRPC in the settings experiments run: the unmasked sum is exact.

Six clients (threshold 4) and two rounds, in each secure encoding: the 16-bit fixed-point field
with the coordinator's steered 10% subset (round 1 sends every coordinate, round 2 the subset the
first aggregate steered), and the shared-scale encoding (round 2 publishes the scales round 1's
magnitudes gave). In round 2 one client dies after sending its shares but before submitting (the
coordinator must rebuild its pairwise masks from the others' shares of its key) and another dies
after submitting (its self mask must come off through the others' shares of its seed). Every
round, the coordinator's unmasked field sum must equal, word for word, the sum of what the
surviving clients encoded before masking.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swarmnet.coordinator.config import SecAggSettings
from swarmnet.coordinator.secagg_round import SecAggRound
from swarmnet.coordinator.secagg_unmask import threshold_for
from swarmnet.federated import FederatedClient
from swarmnet.federated.secagg.packing import pack, packed_words
from swarmnet.federated.update_encoder import SecureValues
from swarmnet.proto import federated_pb2 as pb
from tests.integration.federated.harness import coordinator_config, make_client, run_all, running, wait_rounds

# Round 2 waits out the collect deadline and the unmask phase for its two dead clients: generous
# deadlines, so that round 1 completes on a busy machine too.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

CLIENTS = 6
SETTINGS = {
    "fixed16-steered": SecAggSettings(encoding="fixed", bits=16, clip=0.2, density=0.1),
    "scaled": SecAggSettings(encoding="scaled", levels=1, block=64, initial_scale=0.01),
}

Encoded = list[tuple[pb.RoundConfig, SecureValues]]


class Died(Exception):
    """Raised inside a client thread to stop it the way a crash would."""


@pytest.fixture
def unmasked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], np.ndarray]]:
    """Every unmasked total the coordinator computes, with the survivors it is the sum of."""
    seen: list[tuple[list[str], np.ndarray]] = []
    original = SecAggRound.total

    def total(self: SecAggRound) -> np.ndarray:
        result = original(self)
        seen.append((self.survivors(), result.copy()))
        return result

    monkeypatch.setattr(SecAggRound, "total", total)  # undone by monkeypatch after the test
    return seen


def _record(client: FederatedClient) -> Encoded:
    """What the client encodes each round, before any mask touches it."""
    encoded: Encoded = []
    original = client.encoder.encode_secure

    def encode_secure(delta: Any, config: pb.RoundConfig, samples: int) -> SecureValues:
        values = original(delta, config, samples)
        encoded.append((config, values))
        return values

    client.encoder.encode_secure = encode_secure  # type: ignore[method-assign]
    return encoded


def _die_at_second_submit(client: FederatedClient) -> None:
    original, calls = client.connection.submit, []

    def submit(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise Died("killed after sharing keys, before submitting")
        return original(*args, **kwargs)

    client.connection.submit = submit  # type: ignore[method-assign]


def _die_at_second_unmask(client: FederatedClient) -> None:
    original, calls = client.connection.secagg, []

    def secagg(round_: int, phase: pb.SecAggRequest.Phase, **kwargs: Any) -> pb.SecAggReply:
        if phase == pb.SecAggRequest.UNMASK:
            calls.append(1)
            if len(calls) == 2:
                raise Died("killed after submitting, before unmasking")
        return original(round_, phase, **kwargs)

    client.connection.secagg = secagg  # type: ignore[method-assign]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_unmasked_sums_are_exact_with_dropouts_before_and_after_submitting(
    tmp_path: Path, unmasked: list[tuple[list[str], np.ndarray]], name: str
) -> None:
    settings = SETTINGS[name]
    assert threshold_for(CLIENTS) < CLIENTS
    config = coordinator_config(
        tmp_path, rounds=2, clients_per_round=CLIENTS, min_clients=CLIENTS, secure_aggregation=True,
        round_timeout_s=20.0, phase_timeout_s=8.0,
    )  # fmt: skip
    config = replace(config, secagg=settings)
    with running(config) as coordinator:
        clients = [make_client(coordinator.address, seed) for seed in range(CLIENTS)]
        encoded = {c.client_id: _record(c) for c in clients}
        _die_at_second_submit(clients[4])
        _die_at_second_unmask(clients[5])

        def work(client: FederatedClient) -> None:
            with contextlib.suppress(Died):
                client.run(max_rounds=2, timeout_s=90)

        try:
            run_all(clients, work, timeout=120)
        finally:
            for client in clients:
                client.close()
        state = wait_rounds(coordinator, 2)
    assert [r.outcome for r in state.history] == ["completed", "completed"], [r.reason for r in state.history]
    assert len(unmasked) == 2
    ids = [c.client_id for c in clients]
    assert sorted(unmasked[0][0]) == sorted(ids)
    assert sorted(unmasked[1][0]) == sorted(set(ids) - {ids[4]})  # ids[5] submitted, so its input counts
    word = 0xFFFF if settings.encoding == "fixed" else 0xFFFFFFFF  # 16-bit fields carry the low half
    for number, (survivors, total) in enumerate(unmasked):
        expected = np.zeros_like(total)
        for client_id in survivors:
            expected += encoded[client_id][number][1].words  # uint32 arithmetic: the field's sum
        assert np.array_equal(total & word, expected & word), f"round {number + 1}: the unmasked sum is not exact"
    first, second = encoded[ids[0]][0][0], encoded[ids[0]][1][0]
    if settings.encoding == "fixed":
        assert not first.secagg_indices  # the dense first round
        assert 0 < len(second.secagg_indices) // 4 < state.schema.numel  # the steered subset
    else:
        assert second.secagg_scales != first.secagg_scales  # the scales followed round 1's magnitudes


def test_a_client_filling_its_slots_past_the_range_fails_the_round_instead_of_steering_it(tmp_path: Path) -> None:
    """An SDK client altered to put the largest slot value in every coordinate (outweighing the other
    clients several times over): the unmasked sum is one no honest clients could produce, so the round
    fails with that reason and the global adapter is left as it was."""
    config = replace(
        coordinator_config(tmp_path, rounds=1, clients_per_round=4, min_clients=4, secure_aggregation=True),
        secagg=SETTINGS["scaled"],
    )
    with running(config) as coordinator:
        clients = [make_client(coordinator.address, seed) for seed in range(4)]
        original = clients[0].encoder.encode_secure

        def forge(delta: Any, config: pb.RoundConfig, samples: int) -> SecureValues:
            honest = original(delta, config, samples)
            bits = (2 * config.secagg_levels * config.participants).bit_length()
            slots = packed_words(delta.numel(), bits)
            words = honest.words.copy()
            words[:slots] = pack(np.full(delta.numel(), 2**bits - 1), bits)
            return SecureValues(words=words, weight=honest.weight)

        clients[0].encoder.encode_secure = forge  # type: ignore[method-assign]
        try:
            run_all(clients, lambda c: c.run(max_rounds=1, timeout_s=60), timeout=90)
        finally:
            for client in clients:
                client.close()
        state = wait_rounds(coordinator, 1)
    record = state.history[0]
    assert record.outcome == "failed"
    assert "unmasking failed" in record.reason
    assert "exceeds" in record.reason
    assert state.version == 0
