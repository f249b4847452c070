"""Schedules and idle reclamation, pure: whether a weekly window holds now and when that next
changes (in the window's time zone, daylight saving included), the TrainingJob start-window
gate, and whether an InferenceService is idle from its Prometheus readings."""
