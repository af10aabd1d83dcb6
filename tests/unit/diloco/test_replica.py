"""Replica math against hand-computed references; flat parameters and fragments; the sync schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from swarmnet.diloco import DiLoCoConfig, FlatParameters, InnerConfig, OuterConfig, Replica
from swarmnet.errors import ConfigError
from swarmnet.models import GPT, preset


def test_outer_step_matches_hand_computed_nesterov() -> None:
    torch.manual_seed(0)
    replica = Replica(GPT(preset("tiny")), DiLoCoConfig(outer=OuterConfig(lr=0.7, momentum=0.9)))
    theta0 = replica.global_params.clone()
    g1, g2 = torch.randn_like(theta0) * 1e-2, torch.randn_like(theta0) * 1e-2
    replica.apply_outer(g1.clone())
    # m1 = g1; theta1 = theta0 - lr * (g1 + mu * m1)
    m1 = g1
    theta1 = theta0 - 0.7 * (g1 + 0.9 * m1)
    torch.testing.assert_close(replica.momentum, m1, rtol=0, atol=1e-7)
    torch.testing.assert_close(replica.global_params, theta1, rtol=0, atol=1e-6)
    torch.testing.assert_close(replica.flat.vector, replica.global_params, rtol=0, atol=0)  # local = global
    replica.apply_outer(g2.clone())
    m2 = 0.9 * m1 + g2
    theta2 = theta1 - 0.7 * (g2 + 0.9 * m2)
    torch.testing.assert_close(replica.momentum, m2, rtol=0, atol=1e-7)
    torch.testing.assert_close(replica.global_params, theta2, rtol=0, atol=1e-6)


def test_outer_step_equals_torch_sgd_nesterov_on_the_pseudo_gradient() -> None:
    torch.manual_seed(1)
    replica = Replica(GPT(preset("tiny")), DiLoCoConfig())
    reference = nn.Parameter(replica.global_params.clone())
    sgd = torch.optim.SGD([reference], lr=0.7, momentum=0.9, nesterov=True)
    for _ in range(3):
        local = replica.global_params + torch.randn_like(reference) * 1e-2
        average = replica.global_params - local
        reference.grad = average.clone()
        sgd.step()
        replica.apply_outer(average)
    torch.testing.assert_close(replica.global_params, reference.detach(), rtol=1e-5, atol=1e-6)


def test_mixing_keeps_a_share_of_the_local_fragment() -> None:
    torch.manual_seed(2)
    config = DiLoCoConfig(inner_steps=4, fragments=2, mixing=0.25, overlap_steps=1)
    replica = Replica(GPT(preset("tiny")), config)
    part = replica.flat.slices[1]
    local_before = replica.flat.vector[part].clone() + 1.0
    replica.flat.vector[part] = local_before
    untouched = replica.flat.vector[replica.flat.slices[0]].clone()
    replica.apply_outer(torch.zeros(part.stop - part.start), 1)
    expected = 0.25 * local_before + 0.75 * replica.global_params[part]
    torch.testing.assert_close(replica.flat.vector[part], expected)
    torch.testing.assert_close(replica.flat.vector[replica.flat.slices[0]], untouched)


def test_flat_parameters_are_views_and_fragments_are_equal() -> None:
    model = GPT(preset("tiny"))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    flat = FlatParameters(model, fragments=4)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, before[name], rtol=0, atol=0)
    sizes = [s.stop - s.start for s in flat.slices]
    assert sum(sizes) == flat.numel == model.num_parameters()
    assert max(sizes) - min(sizes) <= 1
    flat.vector.zero_()
    assert all(float(p.detach().abs().sum()) == 0 for p in model.parameters())  # parameters share the vector


def test_sync_schedule_staggers_fragments() -> None:
    assert [s for s in range(1, 13) if DiLoCoConfig(inner_steps=4).syncs_after(s)] == [4, 8, 12]
    config = DiLoCoConfig(inner_steps=6, fragments=3)
    assert {s: config.syncs_after(s) for s in range(1, 13) if config.syncs_after(s)} == {
        2: [0],
        4: [1],
        6: [2],
        8: [0],
        10: [1],
        12: [2],
    }


def test_inner_schedule_warms_up_then_decays() -> None:
    inner = InnerConfig(lr=1e-2, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert inner.lr_at(0) == pytest.approx(1e-3)
    assert inner.lr_at(9) == pytest.approx(1e-2)
    assert inner.lr_at(60) == pytest.approx(0.55e-2)
    assert inner.lr_at(500) == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "changes",
    [{"inner_steps": 0}, {"fragments": 5, "inner_steps": 4}, {"overlap_steps": 3, "fragments": 2, "inner_steps": 4},
     {"mixing": 1.0}, {"codec": "nope"}],
)  # fmt: skip
def test_bad_configs_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DiLoCoConfig(**changes).validate()  # type: ignore[arg-type]
