"""Thresholds, their evaluation, baselines."""
