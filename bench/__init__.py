"""Benchmarks of the operator against the physical limits of the local control plane."""
