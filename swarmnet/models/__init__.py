"""swarmnet.models: model definitions trained by the swarm.

* **GPT, GPTConfig, PRESETS, preset (gpt.py)**: byte-level decoder-only transformer, presets
  ``tiny``, ``debug``, ``demo``, ``small``.
"""

from swarmnet.models.gpt import GPT, PRESETS, GPTConfig, preset

__all__ = ["GPT", "PRESETS", "GPTConfig", "preset"]
