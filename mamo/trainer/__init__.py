"""The pre-training loop and what it needs: config, optimizer/schedule, checkpoints,
distributed setup, metrics. ``python -m mamo.train`` is the CLI over ``loop.prepare/train``."""
