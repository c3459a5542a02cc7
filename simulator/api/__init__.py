"""HTTP routes of the simulator: the simulated user API and the seed-000 control contract."""
