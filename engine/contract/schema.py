"""The names and numbers both halves use besides the protocol and the motion file.

A contract file (engine/contract/__init__.py): the engine and the add-on import these instead of
keeping their own copies (each copy used to need its own test).
"""
from __future__ import annotations

#: the job's wire form (engine/jobs.py; the add-on builds it in core/requests.py)
JOB_SCHEMA = "joyvasa.job"
JOB_VERSION = 1

#: the art-direction controls file (engine/motion/controls.py parses it; the add-on writes it)
CONTROLS_SCHEMA = "joyvasa.controls"
CONTROLS_VERSION = 1

#: rows of LivePortrait's 21 implicit keypoints that move the lips and the eyes
LIP_ROWS: tuple[int, ...] = (6, 12, 14, 17, 19, 20)
EYE_ROWS: tuple[int, ...] = (11, 13, 15, 16, 18)

#: upstream's framing defaults (scale, vx, vy of the crop around the face; its gradio app)
FRAMING_SCALE, FRAMING_VX, FRAMING_VY = 2.3, 0.0, -0.125

#: lip normalisation runs only when the source's lip-open ratio is at least this
#: (engine/render/compose.py; the add-on's framing summary says whether it will)
LIP_NORMALIZE_THRESHOLD = 0.03

#: what both sides say about weights written by tools/make_synthetic_weights.py
SYNTHETIC_NOTE = "synthetic weights: random numbers, not a face"
