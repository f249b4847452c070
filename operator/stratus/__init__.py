"""Stratus: spot-tolerant GPU training and metric-gated GPU inference rollouts on Kubernetes."""

__version__ = "0.1.0"
