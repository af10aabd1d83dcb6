"""Codecs by name (configured instances) and by wire id (for decoding any payload)."""

from __future__ import annotations

import torch

from swarmnet.compression.base import Codec
from swarmnet.compression.wire import DEFAULT_MAX_ELEMENTS, CodecId, unpack
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


def decode(payload: bytes | bytearray | memoryview, max_elements: int = DEFAULT_MAX_ELEMENTS) -> torch.Tensor:
    """Decode a payload of any registered family; ``CodecError`` for anything malformed."""
    header, sections = unpack(payload, max_elements)
    family = _BY_ID.get(header.codec)
    if family is None:
        raise CodecError(f"no decoder for codec id {header.codec.name} in this build")
    return family.decode_sections(header, sections)
