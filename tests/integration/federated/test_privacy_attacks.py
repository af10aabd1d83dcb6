"""Differential privacy against an observer who knows the configuration: noise, sampling, accounting.

The attacks use what anyone reading the coordinator's settings (or its documentation) knows: the
seed an older coordinator derived its noise and its sample from, the round number, the noise
multiplier and the active clients. Neither the noise nor the sample may be reproducible from
that, and the epsilon a coordinator reports must be that of the sampling it actually did.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from swarmnet.coordinator.store import ClientRecord, CoordinatorStore
from swarmnet.federated.privacy import PrivacyConfig, gaussian_noise
from swarmnet.federated.vector import AdapterSchema
from swarmnet.identity import Identity
from swarmnet.testing import poll_until
from tests.integration.federated.harness import coordinator_config, initial_adapter, running, wait_rounds
from tests.integration.federated.raw_client import RawClient, serving
from tests.unit.federated.rdp_numeric import numeric_epsilon, numeric_rdp

pytestmark = pytest.mark.timeout(120)

LENGTH = sum(t.numel() for t in initial_adapter().values())


def _flat_initial() -> torch.Tensor:
    initial = initial_adapter()
    return AdapterSchema.of(initial).flatten(initial)


def test_central_noise_cannot_be_regenerated_and_subtracted(tmp_path: Path) -> None:
    privacy = PrivacyConfig(clip_norm=1.0, noise_multiplier=1.0, placement="central")
    config = replace(
        coordinator_config(tmp_path, rounds=1, clients_per_round=2, min_clients=2, min_participants=2),
        privacy=privacy,
    )
    secret = torch.randn(LENGTH, generator=torch.Generator().manual_seed(11))
    secret *= 0.5 / secret.norm()  # within the clip norm: the server leaves it as it is
    known = torch.zeros(LENGTH)  # the attacker's own update
    with running(config) as coordinator:
        victim, attacker = RawClient(coordinator.address), RawClient(coordinator.address)
        with serving([victim, attacker], lambda c, _: secret if c is victim else known):
            state = wait_rounds(coordinator, 1)
    assert state.history[-1].outcome == "completed"
    mean = state.adapter - _flat_initial()
    # The attack: an older coordinator drew the noise of round r from seed * 1_000_003 + r (seed 0
    # unless set) and averaged two updates, std z * C / 2; regenerate it, subtract, solve for the victim.
    noise = gaussian_noise(LENGTH, privacy.noise_multiplier * privacy.clip_norm / 2, torch.Generator().manual_seed(1))
    recovered = 2 * (mean - noise) - known
    error = (recovered - secret).abs()
    # With predictable noise this recovers the update to float rounding (5e-8); with noise from the
    # OS the error is the noise itself, about z * C per coordinate.
    assert float(error.max()) > 0.5, f"the victim's update was recovered to {float(error.max()):.1e}"
    assert float(error.std()) > 0.5


def _inactive_records(count: int) -> dict[str, ClientRecord]:
    records = {}
    for _ in range(count):
        identity = Identity.generate()
        records[identity.peer_id] = ClientRecord(
            client_id=identity.peer_id, public_key=identity.public_key, samples=10, registered_at=time.time()
        )
    return records


def test_epsilon_is_that_of_the_sampling_done_over_the_active_clients(tmp_path: Path) -> None:
    """10 clients ever registered, 4 active, 2 per round: each active client is in a round with q = 1/2."""
    CoordinatorStore(tmp_path).save_clients(_inactive_records(6))  # registered in an earlier run, gone since
    privacy = PrivacyConfig(clip_norm=1.0, noise_multiplier=1.0, delta=1e-5, placement="central")
    rounds = 4
    config = replace(
        coordinator_config(tmp_path, rounds=rounds, clients_per_round=2, min_clients=4, min_participants=1),
        privacy=privacy,
    )
    with running(config) as coordinator:
        clients = [RawClient(coordinator.address) for _ in range(4)]
        active = sorted(c.client_id for c in clients)
        with serving(clients, lambda _c, _t: torch.zeros(LENGTH)):
            engine = coordinator.server.engine
            assert engine is not None
            poll_until(engine.done, timeout=60, interval=0.05, what="the rounds to complete")
            history, rdp, steps = engine.state.history, engine.accountant.rdp(), engine.accountant.steps
            epsilon, orders = engine.epsilon(), engine.accountant.orders
            status = clients[0].connection.status()  # what any client may ask
    assert len(engine.registry.clients) == 10
    completed = [r for r in history if r.outcome == "completed"]
    assert steps == len(completed) == rounds
    q, z = 2 / 4, privacy.noise_multiplier  # participants / active clients, not / everyone registered
    for order in (2, 4, 8, 16, 32):
        expected = rounds * numeric_rdp(q, z, order)
        assert rdp[orders.index(order)] == pytest.approx(expected, rel=1e-9), order
    assert epsilon == pytest.approx(numeric_epsilon(q, z, rounds, privacy.delta, range(2, 65)), rel=1e-9)
    # The sample is secret: the older coordinator's draw from its public seed does not predict it,
    # and the Status call names nobody who was drawn.
    predicted = [tuple(sorted(random.Random(f"0:{r.round}").sample(active, 2))) for r in history]
    assert [r.selected for r in history] != predicted
    assert status.history
    assert status.epsilon == pytest.approx(epsilon)
    assert not any(h.selected or h.contributors for h in status.history)
    assert not status.selected
    assert not status.submitted
