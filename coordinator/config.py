"""The coordinator's settings: one frozen dataclass per concern, each with ``validate()``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from swarmnet.compression import codec_names
from swarmnet.coordinator.strategies import StrategyConfig
from swarmnet.errors import ConfigError
from swarmnet.federated.loopback import is_loopback_host
from swarmnet.federated.privacy import PrivacyConfig

__all__ = ["CoordinatorConfig", "RoundSettings", "SecAggSettings", "TlsConfig"]


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """Serve over TLS with this certificate chain and key (PEM files)."""

    cert_path: Path
    key_path: Path


@dataclass(frozen=True, kw_only=True)
class SecAggSettings:
    """Secure aggregation: how updates are encoded into the finite field before masking.

    ``scaled`` (the default) sends every coordinate as an integer in ``[-levels, levels]`` times a
    scale per ``block`` that the coordinator publishes (``initial_scale`` in the first round, then
    derived from the magnitudes the last round summed), packed several to a word. ``fixed`` clips
    to ``clip`` and sends ``bits``-bit fixed point for a ``density`` share of the coordinates; it is
    the encoding for differential privacy, whose noise coarse rounding would distort.
    """

    encoding: Literal["scaled", "fixed"] = "scaled"
    levels: int = 7  # scaled: integers in [-7, 7] times the scale (7 bits a value for 8 clients, 4 per word)
    block: int = 4096  # scaled: coordinates per shared scale
    initial_scale: float = 1e-3  # scaled: the first round's scale, before any magnitudes came back
    bits: Literal[16, 32] = 16  # fixed: field Z_2^bits; 16 halves the uplink and keeps 2**15 / max_clients levels
    clip: float = 0.05  # per-coordinate range [-clip, clip] of the (weighted) delta before quantization
    density: float = 1.0  # share of coordinates sent: a shared random subset per round, residual kept by EF
    max_clients: int = 16  # headroom: sums of this many field values never wrap
    dropout_fraction: float = 1 / 3  # the round unmasks while at most this share of the clients drop

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if self.bits not in (16, 32):
            raise ConfigError(f"secagg bits must be 16 or 32, got {self.bits}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError(f"secagg clip must be finite and > 0, got {self.clip}")
        if not 0.0 < self.density <= 1.0:
            raise ConfigError(f"secagg density must be in (0, 1], got {self.density}")
        if not 2 <= self.max_clients <= 1024:
            raise ConfigError(f"secagg max_clients must be in [2, 1024], got {self.max_clients}")
        if not 0.0 <= self.dropout_fraction < 0.5:
            raise ConfigError(f"dropout_fraction must be in [0, 0.5), got {self.dropout_fraction}")
        if self.encoding not in ("scaled", "fixed"):
            raise ConfigError(f"secagg encoding must be 'scaled' or 'fixed', got {self.encoding!r}")
        if not 1 <= self.levels <= 127 or not 1 <= self.block <= 1 << 24:
            raise ConfigError(f"secagg levels must be in [1, 127], block in [1, 2^24]: {self.levels}, {self.block}")
        if not (math.isfinite(self.initial_scale) and self.initial_scale > 0):
            raise ConfigError(f"secagg initial_scale must be finite and > 0, got {self.initial_scale}")


@dataclass(frozen=True, kw_only=True)
class RoundSettings:
    """What each round asks of the clients, and when it gives up on them."""

    clients_per_round: int = 8  # K: clients sampled from the active ones (with DP: each with probability K / active)
    min_clients: int = 2  # active clients needed before a round opens
    min_participants: int = 2  # updates needed to aggregate; fewer and the round fails
    round_timeout_s: float = 120.0  # from opening the round to the last accepted update
    phase_timeout_s: float = 30.0  # each secure-aggregation key/share/unmask phase
    rounds: int = 0  # stop after this many completed rounds (0: run until stopped)
    local_steps: int = 10
    learning_rate: float = 1e-3  # the clients' local optimizer learning rate
    codec: str = "none"  # "none" (dense fp32), "topk" (top-k ratio, int8 values), or a registered codec
    topk_ratio: float = 0.01
    error_feedback: bool = True
    secure_aggregation: bool = False
    active_window_s: float = 60.0  # a client that polled within this is available for sampling

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting."""
        if self.clients_per_round < 1 or self.min_clients < 1 or self.min_participants < 1:
            raise ConfigError("clients_per_round, min_clients and min_participants must be >= 1")
        if self.min_participants > self.clients_per_round:
            raise ConfigError(
                f"min_participants ({self.min_participants}) exceeds clients_per_round ({self.clients_per_round})"
            )
        if self.min_clients < self.min_participants:
            raise ConfigError("min_clients below min_participants: rounds could open that can never complete")
        if self.secure_aggregation and self.min_participants < 2:
            raise ConfigError("secure aggregation needs min_participants >= 2: one masked update is no secret")
        for name in ("round_timeout_s", "phase_timeout_s", "active_window_s", "learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be finite and > 0, got {value}")
        if self.local_steps < 1 or self.rounds < 0:
            raise ConfigError("local_steps must be >= 1 and rounds >= 0")
        if not 0.0 < self.topk_ratio <= 1.0:
            raise ConfigError(f"topk_ratio must be in (0, 1], got {self.topk_ratio}")
        if self.codec != "topk" and self.codec not in codec_names():
            raise ConfigError(f"unknown codec {self.codec!r}: topk or one of {', '.join(codec_names())}")


@dataclass(frozen=True, kw_only=True)
class CoordinatorConfig:
    """Everything ``swarmnet coordinator`` runs with."""

    state_dir: Path  # global adapter, strategy state, round history and client registry
    run: str = "federated"
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (reported by the server)
    rounds: RoundSettings = field(default_factory=RoundSettings)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    strategy_name: str = "fedavg"
    secagg: SecAggSettings = field(default_factory=SecAggSettings)
    privacy: PrivacyConfig | None = None  # differential privacy; None: off
    tokens: frozenset[str] = frozenset()  # operator-issued tokens; empty: any key may register
    allowed_keys: frozenset[bytes] | None = None  # Ed25519 public keys allowed to register; None: any
    tls: TlsConfig | None = None
    max_update_bytes: int = 64 << 20  # larger declared or streamed updates get RESOURCE_EXHAUSTED
    chunk_bytes: int = 1 << 20  # size of the chunks the adapter streams in
    clock_skew_s: float = 300.0  # registration timestamps may be this far off
    session_ttl_s: float = 86400.0  # a session token is refused this long after its registration
    max_registered: int = 10_000  # registered clients kept; when full, only expired ones make room
    allow_insecure: bool = False  # serve plaintext (no TLS) on an address beyond loopback: tokens readable
    # INSECURE, for experiments and tests only (``swarmnet coordinator`` has no flag for it): derive DP
    # noise, client sampling and secure-aggregation subsets from this seed, so a run repeats; anyone
    # who knows it can subtract the noise and predict the sample. None: all from the OS's CSPRNG.
    insecure_deterministic_seed: int | None = None

    def validate(self) -> None:
        """Raise ``ConfigError`` for an impossible setting (checks the nested configs too)."""
        self.rounds.validate()
        self.strategy.validate()
        self.secagg.validate()
        if self.privacy is not None:
            self.privacy.validate()
        if self.rounds.secure_aggregation and self.strategy.aggregation != "mean":
            raise ConfigError(
                f"secure aggregation reveals only the sum; {self.strategy.aggregation} needs single updates"
            )
        if self.rounds.secure_aggregation and self.rounds.clients_per_round > self.secagg.max_clients:
            raise ConfigError("clients_per_round exceeds secagg max_clients: the masked sum could wrap")
        if self.privacy is not None and self.rounds.secure_aggregation and self.secagg.encoding == "scaled":
            raise ConfigError(
                "differential privacy needs secagg encoding 'fixed': the scaled encoding's coarse rounding and "
                "error feedback would distort the noise and carry updates past the clip"
            )
        if self.privacy is not None and self.rounds.secure_aggregation and self.secagg.density < 1:
            # The coordinator cannot re-clip a masked update: coordinates left out of one round's subset
            # would arrive later on top of a new clipped delta, past the sensitivity the noise assumes.
            raise ConfigError("differential privacy with secure aggregation needs secagg density 1")
        if self.privacy is not None and self.strategy.aggregation != "mean":
            raise ConfigError("differential privacy is accounted for the clipped mean; use aggregation 'mean'")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port must be in [0, 65535], got {self.port}")
        if self.max_update_bytes < 1024 or self.chunk_bytes < 1024:
            raise ConfigError("max_update_bytes and chunk_bytes must be >= 1024")
        if not self.run or len(self.run) > 128:
            raise ConfigError("run must be a non-empty name of at most 128 characters")
        seed = self.insecure_deterministic_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ConfigError(f"insecure_deterministic_seed must be an int >= 0 or None, got {seed!r}")
        self._validate_access()

    def _validate_access(self) -> None:
        """Sessions, registry size and transport security."""
        for name in ("clock_skew_s", "session_ttl_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be finite and > 0, got {value}")
        if not 1 <= self.max_registered <= 1_000_000:
            raise ConfigError(f"max_registered must be in [1, 1000000], got {self.max_registered}")
        if self.tls is None and not self.allow_insecure and not is_loopback_host(self.host):
            raise ConfigError(
                f"refusing to serve plaintext on {self.host!r}: session and operator tokens would cross the "
                "network readable; give a TLS certificate (--tls-cert/--tls-key), bind to loopback, or pass "
                "--allow-insecure (allow_insecure=True) on a network you trust"
            )
