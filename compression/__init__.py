"""swarmnet.compression: codecs, error feedback and the self-validating wire format.

Nothing in here knows about networking. Codecs arrive with the compression issue.
"""

__all__: list[str] = []
