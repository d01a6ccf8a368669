"""Training stage: the one loop every task shares, its batching and its checkpoints."""
