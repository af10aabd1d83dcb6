"""coordinator/proto."""
