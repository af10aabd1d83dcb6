"""swarmnet.coordinator.monitor: the swarm monitoring web page, its JSON API and Prometheus metrics.

* **MonitorState (state.py)**: the peers, totals and histories, built only from verified telemetry
* **LossCurves, AveragingLog, FederatedLog (history.py)**: bounded, deduplicated histories
* **render_metrics (prometheus.py)**: the snapshot in Prometheus' text format
* **MonitorServer (server.py)**: the HTTP routes (``/``, ``/static/...``, ``/api/swarm``, ``/metrics``, ``/healthz``)
* **TelemetryPoller (poller.py)**: reads the DHT every second into the state
* ``static/``: the page (``index.html``, ``app.js``, ``style.css``) and the vendored uPlot chart library

``swarmnet monitor`` (``swarmnet/cli/monitor.py``) wires them together.
"""

from swarmnet.coordinator.monitor.poller import PollerStatistics, TelemetryPoller
from swarmnet.coordinator.monitor.server import MonitorServer
from swarmnet.coordinator.monitor.state import MonitorState

__all__ = ["MonitorServer", "MonitorState", "PollerStatistics", "TelemetryPoller"]
