"""Codecs by name (configured instances) and by wire id (for decoding any payload)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from swarmnet.compression.base import Codec
from swarmnet.compression.wire import CodecId, unpack
from swarmnet.errors import CodecError

__all__ = ["codec_names", "decode", "get_codec", "register"]

_BY_NAME: dict[str, Codec] = {}
_BY_ID: dict[CodecId, type[Codec]] = {}


def register(codec: Codec) -> Codec:
    """Make ``codec`` available under ``codec.name``; a name can be taken only once."""
    if codec.name in _BY_NAME:
        raise ValueError(f"a codec named {codec.name!r} is already registered: {_BY_NAME[codec.name]!r}")
    known = _BY_ID.setdefault(codec.codec_id, type(codec))
    if known is not type(codec):
        raise ValueError(f"codec id {codec.codec_id.name} already belongs to {known.__name__}")
    _BY_NAME[codec.name] = codec
    return codec


def get_codec(name: str) -> Codec:
    """The codec registered as ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no codec named {name!r}; known: {', '.join(sorted(_BY_NAME))}") from None


def codec_names() -> list[str]:
    """Every registered codec name, sorted."""
    return sorted(_BY_NAME)


def decode(
    payload: bytes | bytearray | memoryview,
    max_elements: int | None = None,
    *,
    shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Decode a payload of any registered family; ``CodecError`` for anything malformed.

    ``max_elements`` bounds the tensor (and so the memory) a payload may ask for: pass the size your context
    allows. Without it the bound is ``shape``'s element count, else ``wire.DEFAULT_MAX_ELEMENTS`` (2**26).
    ``shape`` and ``dtype``, if given, must be exactly the payload's.
    """
    header, sections = unpack(payload, max_elements, shape=shape, dtype=dtype)
    family = _BY_ID.get(header.codec)
    if family is None:
        raise CodecError(f"no decoder for codec id {header.codec.name} in this build")
    return family.decode_sections(header, sections)
