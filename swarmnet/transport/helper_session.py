"""Keep hivemind's DHT process and its p2p daemon out of reach of signals meant for us.

A shell's Ctrl+C signals the whole foreground process group, and ``kill -- -PGID`` does the same.
hivemind forks its DHT process into our group, and that process starts ``p2pd`` there too, so both
would die together with us, before we could withdraw our records through them: the departure was
lost, and the DHT process, its daemon gone, hung in hivemind's shutdown.

While ``forking_into_own_session()`` is active, the next fork made by the same thread runs
``_isolate()`` in the child: a new session (and process group) of its own, which ``p2pd`` inherits,
and SIGINT/SIGTERM ignored. We stop it ourselves through hivemind's pipe (and kill it if it is
stuck); ``orphan_guard.py`` ends it if we are SIGKILLed. The Go daemon ignores an inherited SIG_IGN
for SIGTERM, which is why it needs the separate group rather than the ignored signals.

A new session rather than only a new group: a background group of the terminal's session that
writes to the terminal could be stopped by SIGTTOU (``stty tostop``); outside the session it cannot.

When a signal does stop the daemon (systemd's default ``KillMode=control-group`` signals every process
of the service), it logs "error accepting connection: ... use of closed network connection", which
hivemind relays at ERROR; the DHT process drops that one line: it is the daemon closing its socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

__all__ = ["forking_into_own_session"]

_lock = threading.Lock()
_forking_thread: int | None = None  # the thread whose next fork is isolated, while one is


def _isolate() -> None:
    """Runs in every freshly forked child; acts only in the one forked by the registered thread."""
    global _forking_thread
    if _forking_thread is None or _forking_thread != threading.get_ident():
        return
    _forking_thread = None  # the child's own later forks (none today) stay ordinary
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Our asyncio loop's signal wakeup fd was inherited; a signal here must not wake the parent's loop.
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    logging.getLogger("hivemind.p2p.p2p_daemon").addFilter(_drop_socket_closed)


def _drop_socket_closed(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("error accepting connection" in message and "use of closed network connection" in message)


os.register_at_fork(after_in_child=_isolate)


@contextlib.contextmanager
def forking_into_own_session() -> Iterator[None]:
    """Processes this thread forks inside the block start a session of their own and ignore SIGINT/SIGTERM."""
    global _forking_thread
    with _lock:  # one isolated start at a time: the hook reads a single slot
        _forking_thread = threading.get_ident()
        try:
            yield
        finally:
            _forking_thread = None
