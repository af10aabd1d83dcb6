"""Module records: found by uid and by prefix; forged, misplaced and stale ones are ignored and counted."""

from __future__ import annotations

import torch

from swarmnet.identity import Identity
from swarmnet.keyspace import family_of
from swarmnet.records import sign_record
from swarmnet.remote import HostedModule, ModuleDirectory, ModuleRecord, ModuleServer, module_key, prefix_key
from swarmnet.testing import run_virtual
from swarmnet.transport.memory import MemoryNetwork


def test_keys_belong_to_their_families() -> None:
    family = family_of(module_key("RUN.L.3.7"))
    assert family is not None
    assert family.kind == ModuleRecord.KIND
    prefix_family = family_of(prefix_key("RUN.L.3."))
    assert prefix_family is not None
    assert prefix_family.name == "remote-prefix"


def test_servers_are_found_by_uid_and_by_prefix() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        servers = []
        for uids in (["RUN.L.3.0", "RUN.L.3.1"], ["RUN.L.3.1", "RUN.L.4.0"]):
            identity = Identity.generate()
            hosted = [HostedModule(uid, torch.nn.Identity()) for uid in uids]
            servers.append(ModuleServer(network.add_peer(identity.peer_id), identity, hosted))
            await servers[-1].start()
        directory = ModuleDirectory(network.add_peer())
        assert [r.peer_id for r in await directory.replicas("RUN.L.3.1")] == sorted(
            s._identity.peer_id for s in servers
        )
        row = await directory.uids_under("RUN.L.3.")
        assert sorted(row) == ["RUN.L.3.0", "RUN.L.3.1"]
        assert len(row["RUN.L.3.1"]) == 2
        await servers[0].stop()  # announced as draining: no longer a replica
        assert len(await directory.replicas("RUN.L.3.1")) == 1
        await servers[1].stop()

    run_virtual(main())


def test_forged_misplaced_and_stale_records_are_ignored_and_counted() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        honest, mallory = Identity.generate(), Identity.generate()
        uid = "RUN.stage.1"
        key = module_key(uid)
        transport = network.add_peer(mallory.peer_id)
        now = network.clock.time()

        def record(signer: Identity, slot: str, timestamp: float, throughput: float = 10.0) -> bytes:
            payload = ModuleRecord(uid=uid, throughput=throughput)
            return sign_record(signer, payload, key=key, subkey=slot, timestamp=timestamp, expires_at=now + 60)

        forged = bytearray(record(honest, honest.peer_id, now))
        forged[-3] ^= 1  # a flipped bit: the signature no longer holds
        await transport.store(key, bytes(forged), now + 60, subkey=honest.peer_id)
        await transport.store(key, record(mallory, "someone-else", now), now + 60, subkey="someone-else")
        await transport.store(key, b"junk", now + 60, subkey="junk")
        directory = ModuleDirectory(network.add_peer())
        assert await directory.replicas(uid) == []
        assert directory.rejections() == {"forged": 1, "malformed": 1, "foreign": 1}

        # A newer record is seen, then an older copy of the same slot comes back: it is a replay.
        await transport.store(key, record(mallory, mallory.peer_id, now, throughput=5.0), now + 60, mallory.peer_id)
        assert [r.throughput for r in await directory.replicas(uid)] == [5.0]
        stale = record(mallory, mallory.peer_id, now - 10, throughput=1e9)
        await transport.store(key, stale, now + 61, subkey=mallory.peer_id)  # a later expiry wins the slot
        assert await directory.replicas(uid) == []
        assert directory.rejections()["replay"] == 1

    run_virtual(main())


def test_a_joining_server_is_listed_only_once_it_goes_online() -> None:
    async def main() -> None:
        network = MemoryNetwork()
        identity = Identity.generate()
        server = ModuleServer(
            network.add_peer(identity.peer_id), identity, [HostedModule("RUN.s.0", torch.nn.Identity())]
        )
        await server.start(online=False)
        directory = ModuleDirectory(network.add_peer())
        assert await directory.replicas("RUN.s.0") == []
        assert await server.go_online()
        assert [r.peer_id for r in await directory.replicas("RUN.s.0")] == [identity.peer_id]
        await server.stop()

    run_virtual(main())
