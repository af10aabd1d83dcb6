"""``swarmnet status``: list a swarm's live peers as a table or as JSON.

A peer's device, compute rate and link speed are what it says of itself: nobody checked them, so
the output marks them as self-reported (readers already clamp them to plausible bounds). The JSON
is strict: records cannot carry NaN or infinity, and printing refuses them all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
from typing import Any

from swarmnet.cli.common import (
    LOGLEVEL_ENV,
    ExitCode,
    add_network_flags,
    configure_logging,
    install_stop_signals,
    network_config,
    start_transport,
)
from swarmnet.identity import Identity
from swarmnet.membership import Member, MembershipConfig, Swarm

__all__ = ["SELF_REPORTED", "add_parser", "member_to_json", "render_table", "run"]

# The fields of a peer's entry that only the peer itself vouches for.
SELF_REPORTED = ("device", "compute_gflops", "bandwidth_mbps", "bandwidth_source")

logger = logging.getLogger(__name__)

EXAMPLE = """example:
  swarmnet status --initial-peers /ip4/203.0.113.7/tcp/31337/p2p/12D3KooW...
  swarmnet status --initial-peers ... --json            # {"swarm": ..., "peers": [{"peer_id": ..., ...}]}
  swarmnet status --initial-peers ... --watch 2         # refresh every 2 s until Ctrl+C
"""


def add_parser(subparsers: Any) -> None:
    """Register the subcommand."""
    parser = subparsers.add_parser(
        "status",
        help="list the live peers of a swarm",
        description="Join the DHT as a client, read the swarm's signed peer announcements, and print them.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_network_flags(parser, default_host="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--swarm", default=MembershipConfig().swarm, help="swarm name (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a JSON object (one per line with --watch)")
    parser.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="refresh every SECONDS")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the swarm once (or repeatedly with --watch)."""
    configure_logging(args.log_level or os.environ.get(LOGLEVEL_ENV) or "WARNING")
    if not args.initial_peers:
        logger.error("--initial-peers is required: status reads the swarm through a running peer")
        return ExitCode.USAGE
    return asyncio.run(_status(args))


async def _status(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    identity = Identity.generate()  # a throwaway identity: status never announces itself
    transport = await start_transport(
        identity, network_config(args, client_mode=True), failure="could not reach the swarm"
    )
    if isinstance(transport, ExitCode):
        return transport
    async with transport:
        swarm = Swarm(transport, identity, MembershipConfig(swarm=args.swarm))
        while not stop.is_set():
            members = await swarm.peers()
            now = transport.clock.time()
            if args.json:
                print(json.dumps(swarm_to_json(args.swarm, members, now), allow_nan=False), flush=True)
            else:
                print(render_table(members, now), flush=True)
            if args.watch is None:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.watch)
    return ExitCode.OK


def member_to_json(member: Member) -> dict[str, Any]:
    """A peer as a JSON-ready dict: its announcement plus when it was last seen."""
    info = member.info
    return {
        "peer_id": member.peer_id,
        "roles": list(info.roles),
        "version": info.software_version,
        "protocol_version": info.protocol_version,
        "state": info.state,
        "device": info.device.model_dump(mode="json"),
        "compute_gflops": info.compute_gflops,
        "bandwidth_mbps": info.bandwidth_mbps,
        "bandwidth_source": info.bandwidth_source,
        "addresses": list(info.addresses),
        "started_at": info.started_at,
        "last_seen": member.last_seen,
        "expires_at": member.expires_at,
        "self_reported": list(SELF_REPORTED),
    }


def swarm_to_json(swarm: str, members: list[Member], now: float) -> dict[str, Any]:
    """The whole listing as one JSON-ready object."""
    return {"swarm": swarm, "time": now, "count": len(members), "peers": [member_to_json(m) for m in members]}


def render_table(members: list[Member], now: float) -> str:
    """A fixed-width table of peers, newest announcement first within equal ids; starred columns are claims."""
    header = ("PEER ID", "ROLES", "DEVICE*", "GFLOPS*", "LINK*", "VERSION", "SEEN", "EXPIRES")
    rows = [header]
    for m in members:
        info = m.info
        link = f"{info.bandwidth_mbps:g} Mbit/s" if info.bandwidth_mbps else "unmeasured"
        gflops = f"{info.compute_gflops:.0f}" if info.compute_gflops is not None else "?"
        device = f"{info.device.kind}:{info.device.name}"[:28]
        seen, expires = f"{now - m.last_seen:.0f}s ago", f"in {m.expires_at - now:.0f}s"
        rows.append((m.peer_id, ",".join(info.roles), device, gflops, link, info.software_version, seen, expires))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join([*lines, f"{len(members)} live peer(s); * self-reported, unverified"])
