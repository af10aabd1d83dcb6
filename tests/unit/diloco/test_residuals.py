"""Fragment residuals in a checkpoint: a fragment mid-exchange is left out, and comes back at zero."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from swarmnet.averaging import Averager, schema_id
from swarmnet.clock import SystemClock
from swarmnet.diloco import Replica
from swarmnet.diloco.residuals import feedback_tensors, load_feedback
from swarmnet.errors import ConfigError
from swarmnet.identity import Identity
from swarmnet.models import GPT, preset
from swarmnet.transport.memory import MemoryNetwork
from tests.unit.averaging.harness import FAST
from tests.unit.diloco.harness import diloco

STREAMING = diloco(fragments=2, codec="sign1bit")


def _averager() -> Averager:
    identity = Identity.generate()
    transport = MemoryNetwork(SystemClock()).add_peer(identity.peer_id)
    return Averager(transport, identity, FAST)


def _exchanging() -> SimpleNamespace:
    def busy() -> dict[str, torch.Tensor]:
        raise RuntimeError("a step is running")

    return SimpleNamespace(feedback_state=busy)


def test_a_fragment_mid_exchange_is_left_out_and_resumes_from_zero(caplog: pytest.LogCaptureFixture) -> None:
    replica = Replica(GPT(preset("tiny")), STREAMING)
    idle = _averager()
    template = [replica.global_params[replica.flat.slices[0]]]
    residual = torch.linspace(-1, 1, template[0].numel())
    sent = f"sent/{_schema(idle, template)}"
    idle.load_feedback_state(
        {f"residual/{sent}": residual, f"shape/{sent}": torch.tensor([residual.numel()])}, template
    )
    with caplog.at_level(logging.INFO, logger="swarmnet.diloco.residuals"):
        tensors, saved = feedback_tensors([idle, _exchanging()])  # type: ignore[list-item]
    assert saved == [0]
    assert set(tensors) == {f"feedback/f0/residual/{sent}", f"feedback/f0/shape/{sent}"}
    assert "fragment 1 is exchanging" in caplog.text
    restored = [_averager(), _averager()]
    with caplog.at_level(logging.INFO, logger="swarmnet.diloco.residuals"):
        load_feedback(restored, replica, tensors, saved, "ckpt")
    assert "holds no error-feedback residuals of fragments [1]: they start from zero" in caplog.text
    assert torch.equal(restored[0].feedback_state()[f"residual/{sent}"], residual)
    assert restored[1].feedback_state() == {}


def test_a_list_of_fragments_the_trainer_lacks_is_refused() -> None:
    replica = Replica(GPT(preset("tiny")), STREAMING)
    with pytest.raises(ConfigError, match="fragments \\[2\\], the trainer has 2"):
        load_feedback([_averager(), _averager()], replica, {}, [2], "ckpt")
    with pytest.raises(ConfigError, match="the trainer has 2"):
        load_feedback([_averager(), _averager()], replica, {}, "all", "ckpt")


def _schema(averager: Averager, tensors: list[torch.Tensor]) -> str:
    return schema_id(tensors, averager.config.codec, averager.config.aggregation.rule)
