"""The RDP accountant against an independent numerical integration of the subsampled Gaussian."""

from __future__ import annotations

import pytest

from swarmnet.federated.privacy import PrivacyAccountant, subsampled_gaussian_rdp
from tests.unit.federated.rdp_numeric import numeric_epsilon, numeric_rdp


@pytest.mark.parametrize(("q", "z"), [(1 / 2, 1.0), (1 / 5, 1.0), (0.05, 0.8), (0.01, 2.0), (1 / 3, 0.6)])
@pytest.mark.parametrize("order", [2, 3, 8, 32, 64])
def test_one_round_matches_numerical_integration(q: float, z: float, order: int) -> None:
    assert subsampled_gaussian_rdp(q, z, order) == pytest.approx(numeric_rdp(q, z, order), rel=1e-6, abs=1e-12)


def test_epsilon_after_rounds_matches_numerical_integration() -> None:
    accountant = PrivacyAccountant()
    accountant.step(1.2, 0.25, steps=10)
    assert accountant.epsilon(1e-5) == pytest.approx(numeric_epsilon(0.25, 1.2, 10, 1e-5, range(2, 65)), rel=1e-6)


def test_the_sampling_rate_matters() -> None:
    """A q computed over every client ever registered (2 of 10) instead of the active ones (2 of 4)."""
    honest, under = PrivacyAccountant(), PrivacyAccountant()
    honest.step(1.0, 2 / 4, steps=4)
    under.step(1.0, 2 / 10, steps=4)
    assert honest.epsilon(1e-5) > 1.5 * under.epsilon(1e-5)
