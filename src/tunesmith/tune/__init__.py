"""Tuning stage: hyperparameter search on Optuna (samplers, pruners, shared RDB storage)."""
