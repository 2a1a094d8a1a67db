"""Live mode (issue 26): the streaming motion sampler (stream.py), its metrics (metrics.py), and the live session."""
