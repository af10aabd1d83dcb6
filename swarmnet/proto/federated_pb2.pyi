from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Capabilities(_message.Message):
    __slots__ = ("codecs", "secure_aggregation", "device", "samples", "software_version")
    CODECS_FIELD_NUMBER: _ClassVar[int]
    SECURE_AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    codecs: _containers.RepeatedScalarFieldContainer[str]
    secure_aggregation: bool
    device: str
    samples: int
    software_version: str
    def __init__(self, codecs: _Optional[_Iterable[str]] = ..., secure_aggregation: _Optional[bool] = ..., device: _Optional[str] = ..., samples: _Optional[int] = ..., software_version: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("protocol_version", "public_key", "timestamp_ms", "nonce", "token", "capabilities", "signature")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    public_key: bytes
    timestamp_ms: int
    nonce: bytes
    token: str
    capabilities: Capabilities
    signature: bytes
    def __init__(self, protocol_version: _Optional[int] = ..., public_key: _Optional[bytes] = ..., timestamp_ms: _Optional[int] = ..., nonce: _Optional[bytes] = ..., token: _Optional[str] = ..., capabilities: _Optional[_Union[Capabilities, _Mapping]] = ..., signature: _Optional[bytes] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("client_id", "session", "run", "protocol_version")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    session: bytes
    run: str
    protocol_version: int
    def __init__(self, client_id: _Optional[str] = ..., session: _Optional[bytes] = ..., run: _Optional[str] = ..., protocol_version: _Optional[int] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("client_id", "wait_s")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    wait_s: float
    def __init__(self, client_id: _Optional[str] = ..., wait_s: _Optional[float] = ...) -> None: ...

class RoundConfig(_message.Message):
    __slots__ = ("local_steps", "codec", "topk_ratio", "error_feedback", "secure_aggregation", "secagg_clip", "secagg_bits", "secagg_density", "secagg_seed", "secagg_threshold", "samples_cap", "dp_clip_norm", "dp_noise_std", "participants", "learning_rate", "secagg_max_clients", "secagg_indices", "secagg_encoding", "secagg_levels", "secagg_block", "secagg_scales")
    LOCAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    TOPK_RATIO_FIELD_NUMBER: _ClassVar[int]
    ERROR_FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    SECURE_AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    SECAGG_CLIP_FIELD_NUMBER: _ClassVar[int]
    SECAGG_BITS_FIELD_NUMBER: _ClassVar[int]
    SECAGG_DENSITY_FIELD_NUMBER: _ClassVar[int]
    SECAGG_SEED_FIELD_NUMBER: _ClassVar[int]
    SECAGG_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_CAP_FIELD_NUMBER: _ClassVar[int]
    DP_CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    DP_NOISE_STD_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SECAGG_MAX_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    SECAGG_INDICES_FIELD_NUMBER: _ClassVar[int]
    SECAGG_ENCODING_FIELD_NUMBER: _ClassVar[int]
    SECAGG_LEVELS_FIELD_NUMBER: _ClassVar[int]
    SECAGG_BLOCK_FIELD_NUMBER: _ClassVar[int]
    SECAGG_SCALES_FIELD_NUMBER: _ClassVar[int]
    local_steps: int
    codec: str
    topk_ratio: float
    error_feedback: bool
    secure_aggregation: bool
    secagg_clip: float
    secagg_bits: int
    secagg_density: float
    secagg_seed: int
    secagg_threshold: int
    samples_cap: int
    dp_clip_norm: float
    dp_noise_std: float
    participants: int
    learning_rate: float
    secagg_max_clients: int
    secagg_indices: bytes
    secagg_encoding: str
    secagg_levels: int
    secagg_block: int
    secagg_scales: bytes
    def __init__(self, local_steps: _Optional[int] = ..., codec: _Optional[str] = ..., topk_ratio: _Optional[float] = ..., error_feedback: _Optional[bool] = ..., secure_aggregation: _Optional[bool] = ..., secagg_clip: _Optional[float] = ..., secagg_bits: _Optional[int] = ..., secagg_density: _Optional[float] = ..., secagg_seed: _Optional[int] = ..., secagg_threshold: _Optional[int] = ..., samples_cap: _Optional[int] = ..., dp_clip_norm: _Optional[float] = ..., dp_noise_std: _Optional[float] = ..., participants: _Optional[int] = ..., learning_rate: _Optional[float] = ..., secagg_max_clients: _Optional[int] = ..., secagg_indices: _Optional[bytes] = ..., secagg_encoding: _Optional[str] = ..., secagg_levels: _Optional[int] = ..., secagg_block: _Optional[int] = ..., secagg_scales: _Optional[bytes] = ...) -> None: ...

class TaskReply(_message.Message):
    __slots__ = ("kind", "round", "global_version", "retry_after_s", "config", "round_nonce", "deadline_s")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WAIT: _ClassVar[TaskReply.Kind]
        TRAIN: _ClassVar[TaskReply.Kind]
        DONE: _ClassVar[TaskReply.Kind]
    WAIT: TaskReply.Kind
    TRAIN: TaskReply.Kind
    DONE: TaskReply.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ROUND_NONCE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    kind: TaskReply.Kind
    round: int
    global_version: int
    retry_after_s: float
    config: RoundConfig
    round_nonce: bytes
    deadline_s: float
    def __init__(self, kind: _Optional[_Union[TaskReply.Kind, str]] = ..., round: _Optional[int] = ..., global_version: _Optional[int] = ..., retry_after_s: _Optional[float] = ..., config: _Optional[_Union[RoundConfig, _Mapping]] = ..., round_nonce: _Optional[bytes] = ..., deadline_s: _Optional[float] = ...) -> None: ...

class UpdateHeader(_message.Message):
    __slots__ = ("client_id", "round", "global_version", "samples", "payload_size", "payload_sha256", "encoding", "train_loss", "signature")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    round: int
    global_version: int
    samples: int
    payload_size: int
    payload_sha256: bytes
    encoding: str
    train_loss: float
    signature: bytes
    def __init__(self, client_id: _Optional[str] = ..., round: _Optional[int] = ..., global_version: _Optional[int] = ..., samples: _Optional[int] = ..., payload_size: _Optional[int] = ..., payload_sha256: _Optional[bytes] = ..., encoding: _Optional[str] = ..., train_loss: _Optional[float] = ..., signature: _Optional[bytes] = ...) -> None: ...

class UpdateChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UpdateHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UpdateHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("accepted", "round", "bytes_received")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    round: int
    bytes_received: int
    def __init__(self, accepted: _Optional[bool] = ..., round: _Optional[int] = ..., bytes_received: _Optional[int] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    def __init__(self, client_id: _Optional[str] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class AdapterHeader(_message.Message):
    __slots__ = ("version", "round", "size", "sha256", "schema")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    version: int
    round: int
    size: int
    sha256: bytes
    schema: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    def __init__(self, version: _Optional[int] = ..., round: _Optional[int] = ..., size: _Optional[int] = ..., sha256: _Optional[bytes] = ..., schema: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ...) -> None: ...

class AdapterChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: AdapterHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[AdapterHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class SecAggRequest(_message.Message):
    __slots__ = ("client_id", "round", "phase", "keys", "messages")
    class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ADVERTISE: _ClassVar[SecAggRequest.Phase]
        SHARE: _ClassVar[SecAggRequest.Phase]
        COLLECT: _ClassVar[SecAggRequest.Phase]
        UNMASK: _ClassVar[SecAggRequest.Phase]
    ADVERTISE: SecAggRequest.Phase
    SHARE: SecAggRequest.Phase
    COLLECT: SecAggRequest.Phase
    UNMASK: SecAggRequest.Phase
    class MessagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    round: int
    phase: SecAggRequest.Phase
    keys: bytes
    messages: _containers.ScalarMap[str, bytes]
    def __init__(self, client_id: _Optional[str] = ..., round: _Optional[int] = ..., phase: _Optional[_Union[SecAggRequest.Phase, str]] = ..., keys: _Optional[bytes] = ..., messages: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class SecAggReply(_message.Message):
    __slots__ = ("roster", "messages", "survivors", "dropped", "threshold")
    class MessagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    ROSTER_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    roster: _containers.RepeatedScalarFieldContainer[bytes]
    messages: _containers.ScalarMap[str, bytes]
    survivors: _containers.RepeatedScalarFieldContainer[str]
    dropped: _containers.RepeatedScalarFieldContainer[str]
    threshold: int
    def __init__(self, roster: _Optional[_Iterable[bytes]] = ..., messages: _Optional[_Mapping[str, bytes]] = ..., survivors: _Optional[_Iterable[str]] = ..., dropped: _Optional[_Iterable[str]] = ..., threshold: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoundSummary(_message.Message):
    __slots__ = ("round", "outcome", "reason", "selected", "contributors", "uplink_bytes", "seconds", "train_loss", "global_version", "secure_aggregation", "epsilon")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    UPLINK_BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SECURE_AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    round: int
    outcome: str
    reason: str
    selected: _containers.RepeatedScalarFieldContainer[str]
    contributors: _containers.RepeatedScalarFieldContainer[str]
    uplink_bytes: int
    seconds: float
    train_loss: float
    global_version: int
    secure_aggregation: bool
    epsilon: float
    def __init__(self, round: _Optional[int] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ..., selected: _Optional[_Iterable[str]] = ..., contributors: _Optional[_Iterable[str]] = ..., uplink_bytes: _Optional[int] = ..., seconds: _Optional[float] = ..., train_loss: _Optional[float] = ..., global_version: _Optional[int] = ..., secure_aggregation: _Optional[bool] = ..., epsilon: _Optional[float] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("run", "round", "phase", "global_version", "registered", "active", "selected", "submitted", "history", "strategy", "epsilon", "protocol_version")
    RUN_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    run: str
    round: int
    phase: str
    global_version: int
    registered: int
    active: int
    selected: _containers.RepeatedScalarFieldContainer[str]
    submitted: _containers.RepeatedScalarFieldContainer[str]
    history: _containers.RepeatedCompositeFieldContainer[RoundSummary]
    strategy: str
    epsilon: float
    protocol_version: int
    def __init__(self, run: _Optional[str] = ..., round: _Optional[int] = ..., phase: _Optional[str] = ..., global_version: _Optional[int] = ..., registered: _Optional[int] = ..., active: _Optional[int] = ..., selected: _Optional[_Iterable[str]] = ..., submitted: _Optional[_Iterable[str]] = ..., history: _Optional[_Iterable[_Union[RoundSummary, _Mapping]]] = ..., strategy: _Optional[str] = ..., epsilon: _Optional[float] = ..., protocol_version: _Optional[int] = ...) -> None: ...
