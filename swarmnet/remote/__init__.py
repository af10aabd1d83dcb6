"""swarmnet.remote: host a torch module on a peer and call it from another, forward and backward.

The layer under SWARM pipelines, served models and mixtures of experts (docs/remote.md):

* **ModuleServer, ServerStatistics (server.py)**: hosts ``HostedModule``s (hosted.py), batches
  concurrent requests (batching.py), refuses what breaks its ``RequestLimits``, and announces each
  module in signed DHT records (records.py) with its measured throughput, queue and state.
* **RemoteCaller, ClientStatistics (client.py)**: async forward/backward calls through the codecs,
  routed by ``ReplicaRouter`` (routing.py) over the replicas ``ModuleDirectory`` (directory.py)
  finds, with retries on other replicas.
* **RemoteModule, BackgroundLoop (module.py)**: a remote module as an ``nn.Module`` whose backward
  flows through the wire.
* wire.py: the request/reply format; config.py: the frozen configs.
"""

from swarmnet.remote.batching import BatcherStatistics
from swarmnet.remote.client import ClientStatistics, RemoteCaller
from swarmnet.remote.config import ClientConfig, RequestLimits, RoutingConfig, ServerConfig
from swarmnet.remote.directory import ModuleDirectory, Replica
from swarmnet.remote.hosted import GradientHook, HostedModule
from swarmnet.remote.module import BackgroundLoop, RemoteModule
from swarmnet.remote.records import ModuleRecord, PrefixRecord, module_key, prefix_key
from swarmnet.remote.routing import ReplicaRouter
from swarmnet.remote.server import ModuleServer, ServerStatistics

__all__ = [
    "BackgroundLoop",
    "BatcherStatistics",
    "ClientConfig",
    "ClientStatistics",
    "GradientHook",
    "HostedModule",
    "ModuleDirectory",
    "ModuleRecord",
    "ModuleServer",
    "PrefixRecord",
    "RemoteCaller",
    "RemoteModule",
    "Replica",
    "ReplicaRouter",
    "RequestLimits",
    "RoutingConfig",
    "ServerConfig",
    "ServerStatistics",
    "module_key",
    "prefix_key",
]
