"""Every default codec is reachable by name, and any payload decodes through the registry."""

from __future__ import annotations

import random

import pytest
import torch

import swarmnet.compression as compression
from swarmnet.compression import ErrorFeedback, Float16Codec, codec_names, decode, get_codec, register
from swarmnet.errors import CodecError

DEFAULTS = ["bf16", "fp16", "int4", "int8", "none", "sign1bit", "topk1pct", "topk1pct_exact", "topk1pct_int8",
            "topk1pct_sign"]  # fmt: skip


def test_default_codecs_are_registered() -> None:
    assert codec_names() == sorted(DEFAULTS)


@pytest.mark.parametrize("name", DEFAULTS)
def test_each_codec_round_trips_through_the_registry(name: str) -> None:
    codec = get_codec(name)
    x = torch.randn(3, 700, generator=torch.Generator().manual_seed(0))
    payload = codec.encode(x)
    generic = decode(payload)
    assert generic.shape == x.shape
    assert torch.equal(generic, codec.decode(payload))
    ratio = len(payload) / (4 * x.numel())
    assert ratio <= 1.01 * codec.estimated_ratio(x.numel()) + 200 / (4 * x.numel())  # header bytes aside
    with pytest.raises(CodecError):
        decode(payload[:-1])


def test_names_are_unique_and_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(Float16Codec("fp16"))
    with pytest.raises(KeyError, match="int8"):
        get_codec("int9")


def test_package_exports_resolve() -> None:
    assert all(getattr(compression, name) is not None for name in compression.__all__)


@pytest.mark.parametrize("name", DEFAULTS)
def test_mutated_payloads_of_every_codec_only_raise_codec_error(name: str) -> None:
    rng = random.Random(name)
    payload = get_codec(name).encode(torch.randn(5, 301, generator=torch.Generator().manual_seed(1)))
    for _ in range(150):
        mutant = bytearray(payload)
        match rng.randrange(3):
            case 0:
                mutant[rng.randrange(len(mutant))] ^= 1 << rng.randrange(8)
            case 1:
                del mutant[rng.randrange(len(mutant)) :]
            case _:
                mutant[rng.randrange(len(mutant)) : rng.randrange(len(mutant))] = rng.randbytes(rng.randrange(1, 16))
        if bytes(mutant) == payload:
            continue
        with pytest.raises(CodecError):
            decode(bytes(mutant))


@pytest.mark.parametrize("name", DEFAULTS)
def test_error_feedback_payloads_keep_the_tensor_shape(name: str) -> None:
    x = torch.randn(3, 5, 70, generator=torch.Generator().manual_seed(2))
    payload = ErrorFeedback().encode("layer.weight", x, get_codec(name))
    assert decode(payload).shape == x.shape
