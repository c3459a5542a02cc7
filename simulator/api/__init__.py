"""HTTP routes of the simulator: the simulated user API and the control contract (docs/api.md)."""
