"""swarmnet.compression: codecs, error feedback, the self-validating wire format, adaptive policy.

Nothing in here knows about networking. Class to file:

* **Codec (base.py)**: the interface: ``encode``, ``decode``, ``estimated_ratio``, fused
  ``encode_with_feedback`` and ``decode_accumulate``.
* **pack, unpack, CodecId (wire.py)**: the payload framing, validated before any allocation;
  every decode is bounded by the caller's ``max_elements`` (default ``DEFAULT_MAX_ELEMENTS``, 2**26).
* **NoneCodec, Float16Codec, BFloat16Codec (cast.py)**; **Int8Codec (int8.py)**, **Int4Codec
  (int4.py)** on **blockwise.py**; **Sign1BitCodec (sign1bit.py)**; **TopKCodec (topk.py)**, its
  payload in **topk_payload.py** and **bitpack.py** for its delta-coded indices.
* **ErrorFeedback (error_feedback.py)**: per-tensor residuals (sender and reducer), DGC momentum
  correction and factor masking, state save and load.
* **CompressionPolicy (policy.py)**: per-layer codec choice under an error or byte budget.
* **register, get_codec, codec_names, decode (registry.py)**: codecs by name; ``decode`` reads any payload.

The registered names: ``none``, ``fp16``, ``bf16``, ``int8``, ``int4``, ``sign1bit``, ``topk1pct``
(sampled threshold, fp16 values), ``topk1pct_exact``, ``topk1pct_int8``, ``topk1pct_sign``.
"""

from swarmnet.compression.base import Codec
from swarmnet.compression.cast import BFloat16Codec, Float16Codec, NoneCodec
from swarmnet.compression.error_feedback import ErrorFeedback, ErrorFeedbackConfig
from swarmnet.compression.int4 import Int4Codec
from swarmnet.compression.int8 import Int8Codec
from swarmnet.compression.policy import CompressionPolicy, PolicyConfig, PolicyPlan
from swarmnet.compression.registry import codec_names, decode, get_codec, register
from swarmnet.compression.sign1bit import Sign1BitCodec
from swarmnet.compression.topk import TopKCodec
from swarmnet.compression.wire import CodecId

__all__ = [
    "BFloat16Codec",
    "Codec",
    "CodecId",
    "CompressionPolicy",
    "ErrorFeedback",
    "ErrorFeedbackConfig",
    "Float16Codec",
    "Int4Codec",
    "Int8Codec",
    "NoneCodec",
    "PolicyConfig",
    "PolicyPlan",
    "Sign1BitCodec",
    "TopKCodec",
    "codec_names",
    "decode",
    "get_codec",
    "register",
]

# The default codecs every peer knows by name (a table of constants, not work at import time).
for _codec in (
    NoneCodec("none"),
    Float16Codec("fp16"),
    BFloat16Codec("bf16"),
    Int8Codec("int8", block_size=4096),
    Int4Codec("int4", block_size=1024),
    Sign1BitCodec("sign1bit", chunk_size=4096),
    TopKCodec("topk1pct", ratio=0.01, selection="sampled", values="fp16"),
    TopKCodec("topk1pct_exact", ratio=0.01, selection="exact", values="fp16"),
    TopKCodec("topk1pct_int8", ratio=0.01, selection="sampled", values="int8"),
    TopKCodec("topk1pct_sign", ratio=0.01, selection="sampled", values="sign"),
):
    register(_codec)
del _codec
