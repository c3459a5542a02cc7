"""The scenario files that ship with failure-lab: data read with ``importlib.resources``."""
