"""What both processes share: settings, the error kinds and their one HTTP mapping, ``/metrics``.

The simulator and the exporter (the shim) each depend on this package and on nothing of the
other; only the embedded composition root (``simulator.app``) puts the two together. Keeping
this package free of either side is what lets the stack-mode shim start without loading the
traffic generator, aiohttp or redis.
"""
