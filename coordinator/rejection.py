"""``Rejected``: a request the coordinator refuses, with the gRPC status the client gets."""

from __future__ import annotations

import grpc

__all__ = ["Rejected"]


class Rejected(Exception):
    """Raised by the round engine and the servicer; the servicer turns it into ``context.abort``.

    Every rejection is logged with its reason by the servicer, so an operator can see why a client
    was turned away; the round and the coordinator carry on.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
