"""Prediction validation: a candidate's answers compared with a baseline's before it is live."""
