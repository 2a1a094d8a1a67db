"""tests/blender/: the outer tests run in the main venv and spawn each bpy venv; the
inside_bpy/ folder is collected only inside a bpy interpreter (JOYVASA_INSIDE_BPY=1)."""
from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("JOYVASA_INSIDE_BPY") == "1" else ["inside_bpy"]
