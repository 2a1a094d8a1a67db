"""Rendering: driving keypoints (compose), face crop / paste-back, streaming W+G renderer, writers."""
