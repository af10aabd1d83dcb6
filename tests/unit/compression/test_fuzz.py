"""Seeded mutation fuzzing of every registered codec: each mutant either decodes exactly as its header says,
the same way through every decode path, or is a ``CodecError`` that leaves the caller's target untouched; and
no decode asks for more elements than the caller's bound.

Mutants of real payloads: bit flips, truncations and extensions (the CRC must catch them), and field
overwrites with the CRC redone (``forge.py``, as a foreign client would): codec id, dtype, dimensions
(2**31, 2**40, 2**64 - 1...), reserved bytes, section sizes and bytes, codec parameters, scales.
"""

from __future__ import annotations

import math
import random
import struct
import sys
from collections.abc import Callable, Iterator

import pytest
import torch

from swarmnet.compression import base, codec_names, decode, get_codec
from swarmnet.compression.wire import unpack
from swarmnet.errors import CodecError
from tests.unit.compression.forge import Fields, seal, split

BOUND = 6000  # elements: the caller's context in every decode below
MUTANTS_PER_PAYLOAD = 160
CLAIMS = (0, 1, 2, 2**31, 2**31 + 1, 2**40, 2**63, 2**64 - 1)
SPECIAL_FLOATS = (math.nan, math.inf, -math.inf, -1.0, -0.0, 3e38, 1e-45, 0.0)

Mutator = Callable[[bytes, Fields, random.Random], bytes]


def sources() -> list[torch.Tensor]:
    """Tensors to mutate payloads of: several blocks and chunks, odd sizes, every dtype, empty and scalar."""
    g = torch.Generator().manual_seed(11)
    return [
        torch.randn(5003, generator=g) * 3,
        torch.randn(3, 37, generator=g).half(),
        torch.randn(7, 9, generator=g).bfloat16(),
        torch.randn(33, generator=g).double(),
        torch.zeros(0),
        torch.tensor(2.5),
    ]


def _flip(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    mutant = bytearray(payload)
    for bit in rng.sample(range(8 * len(mutant)), rng.randint(1, 3)):  # distinct bits: no flip undoes another
        mutant[bit // 8] ^= 1 << bit % 8
    return bytes(mutant)


def _truncate(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    return payload[: rng.randrange(len(payload))]


def _extend(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    return payload + rng.randbytes(rng.randint(1, 16))


def _codec(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    codec = rng.choice([*range(8), rng.randrange(256)])
    return seal(Fields(codec, fields.dtype, fields.shape, fields.sections, fields.version, fields.reserved))


def _dtype(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    dtype = rng.choice([0, 1, 2, 3, 4, rng.randrange(256)])
    return seal(Fields(fields.codec, dtype, fields.shape, fields.sections, fields.version, fields.reserved))


def _dimension(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    shape = list(fields.shape)
    numel = math.prod(shape)
    value = rng.choice([*CLAIMS, numel + 1, max(numel - 1, 0), 2 * numel, rng.randrange(2**64)])
    action = rng.randrange(3) if shape else 0
    if action == 0:
        shape.insert(rng.randrange(len(shape) + 1), value)
    elif action == 1:
        shape[rng.randrange(len(shape))] = value
    else:
        del shape[rng.randrange(len(shape))]
    return seal(Fields(fields.codec, fields.dtype, tuple(shape), fields.sections, fields.version, fields.reserved))


def _header_byte(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    reserved = bytearray(fields.reserved)
    reserved[rng.randrange(3)] = rng.randrange(1, 256)
    version = rng.choice([fields.version, 0, 2, 255])
    return seal(Fields(fields.codec, fields.dtype, fields.shape, fields.sections, version, bytes(reserved)))


def _with_sections(fields: Fields, sections: list[bytes]) -> bytes:
    return seal(Fields(fields.codec, fields.dtype, fields.shape, tuple(sections), fields.version, fields.reserved))


def _section_bytes(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    sections = [bytearray(s) for s in fields.sections]
    filled = [s for s in sections if s]
    for _ in range(rng.randint(1, 4) if filled else 0):
        section = rng.choice(filled)
        section[rng.randrange(len(section))] = rng.randrange(256)
    return _with_sections(fields, [bytes(s) for s in sections])


def _section_size(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    sections = list(fields.sections)
    action = rng.randrange(4) if sections else 3
    if action == 0:
        i = rng.randrange(len(sections))
        sections[i] = sections[i][: rng.randrange(len(sections[i]) + 1)]
    elif action == 1:
        i = rng.randrange(len(sections))
        sections[i] = sections[i] + rng.randbytes(rng.randint(1, 9))
    elif action == 2:
        del sections[rng.randrange(len(sections))]
    else:
        sections.append(rng.randbytes(rng.randrange(5)))
    return _with_sections(fields, sections)


def _params(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    """Codec parameters set to edge values: the block or chunk size, or a top-k field."""
    sections = list(fields.sections)
    if not sections:
        return _section_size(payload, fields, rng)
    if len(sections[0]) == 4:
        sections[0] = struct.pack("<I", rng.choice([0, 1, 7, 2**24, 2**24 + 1, 2**32 - 1, rng.randrange(2**32)]))
    elif len(sections[0]) == 24:
        count, first, scale, width, fmt, reserved = struct.unpack("<QQfBB2s", sections[0])
        field = rng.randrange(6)
        count = rng.choice([*CLAIMS, count + 1, max(count - 1, 0)]) if field == 0 else count
        first = rng.choice([*CLAIMS, first + 1]) if field == 1 else first
        scale = rng.choice(SPECIAL_FLOATS) if field == 2 else scale
        width = rng.choice([0, 1, width + 1, max(width - 1, 0), 57, 58, 64, 65, 255]) if field == 3 else width
        fmt = rng.choice([0, 1, 2, 3, 255]) if field == 4 else fmt
        reserved = rng.choice([b"\0\1", b"\xff\0"]) if field == 5 else reserved
        sections[0] = struct.pack("<QQfBB2s", count, first, scale, width, fmt, reserved)
    return _with_sections(fields, sections)


def _scale(payload: bytes, fields: Fields, rng: random.Random) -> bytes:
    """One per-block scale of a scaled-blocks payload set to a special float."""
    sections = list(fields.sections)
    if len(sections) != 3 or len(sections[0]) != 4 or len(sections[1]) < 4:
        return _section_bytes(payload, fields, rng)
    scales = bytearray(sections[1])
    at = 4 * rng.randrange(len(scales) // 4)
    scales[at : at + 4] = struct.pack("<f", rng.choice(SPECIAL_FLOATS))
    sections[1] = bytes(scales)
    return _with_sections(fields, sections)


MUTATORS: dict[str, Mutator] = {
    "flip": _flip,
    "truncate": _truncate,
    "extend": _extend,
    "codec": _codec,
    "dtype": _dtype,
    "dimension": _dimension,
    "header_byte": _header_byte,
    "section_bytes": _section_bytes,
    "section_size": _section_size,
    "params": _params,
    "scale": _scale,
}
UNSEALED = ("flip", "truncate", "extend")  # the CRC alone must refuse these


def mutants(payload: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    fields = split(payload)
    kinds = list(MUTATORS)
    for _ in range(MUTANTS_PER_PAYLOAD):
        kind = rng.choice(kinds)
        yield kind, MUTATORS[kind](payload, fields, rng)


@pytest.fixture
def allocations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Element counts of every decoded-tensor allocation, through ``base.allocate`` wherever it is used."""
    asked: list[int] = []
    real = base.allocate

    def spy(numel: int, dtype: torch.dtype, *, zero: bool = False) -> torch.Tensor:
        asked.append(numel)
        return real(numel, dtype, zero=zero)

    for name, module in list(sys.modules.items()):
        if name.startswith("swarmnet.compression") and getattr(module, "allocate", None) is real:
            monkeypatch.setattr(module, "allocate", spy)
    return asked


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.all((a == b) | (a.isnan() & b.isnan())))


def check_refused(codec_name: str, payload: bytes, numel: int) -> None:
    """Every path refuses ``payload`` for a target of ``numel`` elements with CodecError, target untouched."""
    codec = get_codec(codec_name)
    for method in (codec.decode_into, codec.decode_accumulate):
        target = torch.arange(numel, dtype=torch.float32)
        with pytest.raises(CodecError):
            method(payload, target)
        assert torch.equal(target, torch.arange(numel, dtype=torch.float32))
    with pytest.raises(CodecError):
        codec.validate(payload, numel)


def check_accepted(codec_name: str, payload: bytes, decoded: torch.Tensor) -> None:
    """``decoded`` is what the header says, and every other path gives the same values."""
    codec = get_codec(codec_name)
    header, _ = unpack(payload, BOUND)
    assert (tuple(decoded.shape), decoded.dtype) == (header.shape, header.dtype)
    assert decoded.numel() <= BOUND
    assert same(decode(payload, max_elements=BOUND), decoded)
    expected = decoded.reshape(-1).float()
    into = torch.full((header.numel,), 7.0)
    codec.decode_into(payload, into)
    assert same(into, expected)
    accumulated = torch.zeros(header.numel)
    codec.decode_accumulate(payload, accumulated)
    assert same(accumulated, expected)
    if bool(torch.isfinite(decoded.double()).all()):
        try:
            codec.validate(payload, header.numel)
        except CodecError as error:  # scaled blocks judge finiteness from the scales alone: conservative
            refusal = str(error)
            assert "non-finite" in refusal
    else:
        with pytest.raises(CodecError, match="non-finite"):
            codec.validate(payload, header.numel)


@pytest.mark.parametrize("name", codec_names())
def test_every_mutant_decodes_exactly_or_is_a_codec_error(name: str, allocations: list[int]) -> None:
    codec, rng = get_codec(name), random.Random(f"fuzz/{name}")
    accepted = refused = 0
    for source in sources():
        payload = codec.encode(source)
        for kind, mutant in mutants(payload, rng):
            try:
                decoded = codec.decode(mutant, max_elements=BOUND)
            except CodecError:
                refused += 1
                check_refused(name, mutant, source.numel())
                continue
            assert kind not in UNSEALED, f"{kind} mutant of a {name} payload got past the CRC"
            accepted += 1
            check_accepted(name, mutant, decoded)
    assert allocations
    assert max(allocations) <= BOUND
    assert refused > accepted > 0  # most mutants are malformed, and the well-formed ones were exercised


@pytest.mark.parametrize("name", codec_names())
@pytest.mark.parametrize("claim", [2**31, 2**40, 2**64 - 1])
def test_a_huge_element_count_is_refused_before_any_allocation(name: str, claim: int, allocations: list[int]) -> None:
    payload = get_codec(name).encode(torch.randn(100, generator=torch.Generator().manual_seed(12)))
    fields = split(payload)
    for shape in ((claim,), (claim, 1), (1 << 16, claim), (claim, claim)):
        mutant = seal(Fields(fields.codec, fields.dtype, shape, fields.sections))
        for bound in (BOUND, 1 << 26):
            with pytest.raises(CodecError, match=r"over the limit|dimension"):
                decode(mutant, max_elements=bound)
            with pytest.raises(CodecError, match=r"over the limit|dimension"):
                get_codec(name).decode(mutant, max_elements=bound)
        check_refused(name, mutant, 100)
    assert not allocations
