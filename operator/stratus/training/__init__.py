"""The TrainingJob controller: pure builders and planner, and the thin kopf handlers."""
