"""Evaluation stage: metrics, baselines and the run report."""
