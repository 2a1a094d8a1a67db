"""LivePortrait stage-one networks (F, M, W, G, S) and keypoint maths; see README.md.

Import the concrete modules (``engine.models.stage_one`` etc.); nothing heavy is imported here.
"""
from __future__ import annotations
