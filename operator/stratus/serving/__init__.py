"""The InferenceService controller: revisions, canary steps judged on Prometheus metrics."""
