"""The ``swarmnet`` command line: one module per subcommand.

* **main.py**: the entry point and subcommand table.
* **common.py**: logging, signals, exit codes and network flags shared by subcommands.
* **dht.py** (``swarmnet dht``), **peer.py** (``swarmnet peer``), **status.py** (``swarmnet status``),
  **local.py** (``swarmnet local``: a bootstrap node and several peers on this machine).
"""
