"""`stratus dashboard`: a local web page of the cluster's TrainingJobs and InferenceServices,
live, with the user's own credentials."""

from stratus.dashboard.server import serve

__all__ = ["serve"]
