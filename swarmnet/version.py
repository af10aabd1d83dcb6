"""Software and wire-protocol versions of this build."""

__version__ = "0.1.0"

# Bumped when a record or RPC changes in a way older peers cannot read. Newer minor
# additions (new optional fields) do not bump it: records tolerate unknown fields.
PROTOCOL_VERSION = 1

# The oldest protocol version this build still accepts from other peers.
MIN_PROTOCOL_VERSION = 1
