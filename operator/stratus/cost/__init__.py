"""Metering: the admin's price table and the pure arithmetic of GPU-hours and their cost."""
