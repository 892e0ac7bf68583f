"""Training: config, loops, evaluation, checkpoints, and the comparisons built on them."""
