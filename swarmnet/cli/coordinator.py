"""``swarmnet coordinator``: serve federated rounds over gRPC until stopped or the round limit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmnet.cli.common import ExitCode, add_telemetry_flag, configure_logging, install_stop_signals, telemetry_config
from swarmnet.errors import ConfigError
from swarmnet.telemetry import TelemetryConfig
from swarmnet.transport.hivemind_transport import HivemindConfig

if TYPE_CHECKING:  # the coordinator's modules import torch and grpc: only when it runs
    from swarmnet.coordinator.telemetry import RoundStatusPublisher

__all__ = ["add_parser", "config_from_args", "run"]

logger = logging.getLogger(__name__)

EXAMPLE = """example:
  swarmnet coordinator --state-dir ./fed --initial-adapter adapter.safetensors --port 50051 \\
      --clients-per-round 8 --rounds 20 --codec topk --topk-ratio 0.05 --secure-aggregation
  # clients: FederatedClient(model, loader, ClientConfig(address="<host>:50051"), lora=...)
  swarmnet coordinator --state-dir ./fed --revoke 12D3KooW...   # refuse one client from its next call on
  swarmnet coordinator --state-dir ./fed --initial-peers /ip4/203.0.113.7/tcp/31337/p2p/12D3KooW... --swarm main
  # also joins the swarm's DHT as a client and publishes round status for the monitor
"""


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "coordinator",
        help="run the federated round service (gRPC)",
        description="Run federated rounds: sample clients, collect their compressed (optionally securely "
        "aggregated) adapter updates, aggregate them and keep the global adapter on disk.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--state-dir", type=Path, required=True, help="global adapter, history and registry; a restart resumes here")
    add("--initial-adapter", type=Path, help="safetensors of the adapter clients start from (first start only)")
    add("--run", dest="run_name", default="federated", help="run name clients see")
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=50051, help="0 picks a free port (printed)")
    add("--rounds", type=int, default=0, help="stop after this many completed rounds (0: until stopped)")
    add("--clients-per-round", type=int, default=8)
    add("--min-clients", type=int, default=2, help="active clients needed before a round opens")
    add("--min-participants", type=int, default=2, help="updates needed to aggregate a round")
    add("--round-timeout", type=float, default=120.0, help="seconds to collect updates")
    add("--phase-timeout", type=float, default=30.0, help="seconds per secure-aggregation key phase")
    add("--local-steps", type=int, default=10)
    add("--lr", type=float, default=1e-3, help="clients' local learning rate")
    add("--codec", default="none", help="'none' (dense fp32), 'topk', or a codec name (int8, sign1bit, ...)")
    add("--topk-ratio", type=float, default=0.01)
    add("--no-error-feedback", action="store_true")
    add("--strategy", default="fedavg", help="fedavg, fedadam, fedyogi, trimmed_mean or centered_clip")
    add("--server-lr", type=float, help="server optimizer learning rate (strategy default if unset)")
    add("--secure-aggregation", action="store_true")
    add(
        "--secagg-encoding",
        default="scaled",
        choices=("scaled", "fixed"),
        help="scaled: every value as an integer in [-levels, levels] times a scale shared by the round; "
        "fixed: --secagg-bits fixed point within --secagg-clip (needed with differential privacy)",
    )
    add("--secagg-levels", type=int, default=7)
    add("--secagg-bits", type=int, default=16, choices=(16, 32))
    add("--secagg-clip", type=float, default=0.05)
    add("--secagg-density", type=float, default=1.0)
    add("--dp-clip", type=float, help="enable differential privacy: per-client L2 clip norm")
    add("--dp-noise", type=float, default=1.0, help="noise multiplier z (std = z * clip)")
    add("--dp-delta", type=float, default=1e-5)
    add("--dp-placement", choices=("central", "distributed"), default="central")
    add("--token-file", type=Path, help="operator-issued tokens, one per line; clients must present one")
    add("--tls-cert", type=Path, help="serve TLS with this PEM certificate chain (needs --tls-key)")
    add("--tls-key", type=Path)
    add(
        "--allow-insecure",
        action="store_true",
        help="serve without TLS on an address beyond loopback (tokens cross the network readable)",
    )
    add("--session-ttl", type=float, default=86400.0, help="seconds a session token stays valid (default 24 h)")
    add("--max-registered", type=int, default=10_000, help="clients the registry holds (expired ones make room)")
    add("--revoke", metavar="CLIENT_ID", help="refuse this client's sessions and registrations, then exit")
    add("--reinstate", metavar="CLIENT_ID", help="let a revoked client register again, then exit")
    add("--linger", type=float, default=10.0, help="seconds to keep answering DONE after the last round")
    # Refused (see config_from_args): DP noise and client sampling come from the OS, never from a flag.
    add("--seed", type=int, help=argparse.SUPPRESS)
    add("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    add(
        "--initial-peers",
        nargs="+",
        default=[],
        metavar="MULTIADDR",
        help="join this swarm's DHT (client mode) and publish round status as telemetry for the monitor",
    )
    add("--swarm", default=TelemetryConfig().swarm, help="swarm to publish telemetry in (default %(default)s)")
    add_telemetry_flag(parser)
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> Any:
    """The ``CoordinatorConfig`` the flags describe (``ConfigError`` for contradictions)."""
    from swarmnet.coordinator.config import CoordinatorConfig, RoundSettings, SecAggSettings, TlsConfig
    from swarmnet.coordinator.strategies import strategy_config
    from swarmnet.federated.privacy import PrivacyConfig

    if args.seed is not None:
        raise ConfigError(
            "--seed is not accepted: differential-privacy noise and client sampling come from the operating "
            "system's CSPRNG, since anyone who knows a seed can subtract the noise and predict who takes part"
        )
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    overrides = {} if args.server_lr is None else {"server_lr": args.server_lr}
    tokens: frozenset[str] = frozenset()
    if args.token_file is not None:
        tokens = frozenset(line.strip() for line in args.token_file.read_text().splitlines() if line.strip())
    return CoordinatorConfig(
        state_dir=args.state_dir,
        run=args.run_name,
        host=args.host,
        port=args.port,
        rounds=RoundSettings(
            clients_per_round=args.clients_per_round,
            min_clients=args.min_clients,
            min_participants=args.min_participants,
            round_timeout_s=args.round_timeout,
            phase_timeout_s=args.phase_timeout,
            rounds=args.rounds,
            local_steps=args.local_steps,
            learning_rate=args.lr,
            codec=args.codec,
            topk_ratio=args.topk_ratio,
            error_feedback=not args.no_error_feedback,
            secure_aggregation=args.secure_aggregation,
        ),
        strategy=strategy_config(args.strategy, **overrides),
        strategy_name=args.strategy,
        secagg=SecAggSettings(
            encoding=args.secagg_encoding,
            levels=args.secagg_levels,
            bits=args.secagg_bits,
            clip=args.secagg_clip,
            density=args.secagg_density,
        ),
        privacy=None
        if args.dp_clip is None
        else PrivacyConfig(
            clip_norm=args.dp_clip, noise_multiplier=args.dp_noise, delta=args.dp_delta, placement=args.dp_placement
        ),
        tokens=tokens,
        tls=None if args.tls_cert is None else TlsConfig(cert_path=args.tls_cert, key_path=args.tls_key),
        allow_insecure=args.allow_insecure,
        session_ttl_s=args.session_ttl,
        max_registered=args.max_registered,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/Ctrl+C or the round limit; exit code 0 then."""
    configure_logging(args.log_level)
    if args.revoke is not None or args.reinstate is not None:
        return _edit_revocations(args)
    try:
        config = config_from_args(args)
        config.validate()
        telemetry = telemetry_from_args(args)
    except (ConfigError, OSError) as error:
        logger.error("%s", error)
        return ExitCode.USAGE
    return asyncio.run(_serve(config, args.initial_adapter, args.linger, telemetry))


def _edit_revocations(args: argparse.Namespace) -> int:
    """``--revoke`` / ``--reinstate``: edit the state directory's revocation list (a running coordinator
    picks the change up on the client's next call)."""
    import time

    from swarmnet.coordinator.revocations import Revocations

    if args.revoke is not None and args.reinstate is not None:
        logger.error("--revoke and --reinstate go one at a time")
        return ExitCode.USAGE
    if not args.state_dir.is_dir():
        logger.error("%s is not a coordinator state directory", args.state_dir)
        return ExitCode.USAGE
    try:
        revocations = Revocations(args.state_dir)
        if args.revoke is not None:
            revocations.revoke(args.revoke, int(time.time() * 1000))
            print(f"revoked {args.revoke}: its sessions and registrations are refused", flush=True)
        elif revocations.reinstate(args.reinstate):
            print(f"reinstated {args.reinstate}: it may register again (old sessions stay refused)", flush=True)
        else:
            logger.error("%s is not on the revocation list of %s", args.reinstate, args.state_dir)
            return ExitCode.USAGE
    except (ConfigError, OSError) as error:
        logger.error("%s", error)
        return ExitCode.USAGE
    return ExitCode.OK


def telemetry_from_args(args: argparse.Namespace) -> tuple[HivemindConfig, TelemetryConfig] | None:
    """Where to publish round status (``None`` without ``--initial-peers`` or with ``--telemetry-period 0``)."""
    telemetry = telemetry_config(args.swarm, args.telemetry_period)
    if not args.initial_peers or telemetry is None:
        return None
    network = HivemindConfig(initial_peers=tuple(args.initial_peers), client_mode=True)
    network.validate()
    telemetry.validate()
    return network, telemetry


async def _serve(
    config: Any, initial_path: Path | None, linger: float, telemetry: tuple[HivemindConfig, TelemetryConfig] | None
) -> int:
    from swarmnet.coordinator.telemetry import RoundStatusPublisher

    # The DHT transport forks its process: join before gRPC and torch start their threads.
    status = None if telemetry is None else await RoundStatusPublisher.open(config.state_dir, *telemetry)
    try:
        return await _serve_rounds(config, initial_path, linger, status)
    finally:
        if status is not None:
            await asyncio.shield(status.close())


async def _serve_rounds(
    config: Any, initial_path: Path | None, linger: float, status: RoundStatusPublisher | None
) -> int:
    from safetensors.torch import load_file

    from swarmnet.coordinator.server import CoordinatorServer

    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        initial = None if initial_path is None else load_file(initial_path)
        server = CoordinatorServer(config, initial)
        port = await server.start()
    except (ConfigError, OSError, RuntimeError) as error:
        logger.error("could not start the coordinator: %s", error)
        return ExitCode.USAGE
    print(f"{config.host}:{port}", flush=True)
    if status is not None and server.engine is not None:
        await status.start(server.engine)
    rounds = asyncio.ensure_future(server.wait())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({rounds, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if rounds.done() and not stop.is_set():
        logger.info("all %d rounds done; answering DONE for %.0f s", config.rounds.rounds, linger)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), linger)
    stopped.cancel()
    await server.stop()
    return ExitCode.OK
