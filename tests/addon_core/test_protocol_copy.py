"""joyvasa_blender/core/protocol.py must be a byte-identical copy of engine/protocol.py."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_protocol_is_byte_identical_copy():
    engine = (REPO / "engine" / "protocol.py").read_bytes()
    addon = (REPO / "joyvasa_blender" / "core" / "protocol.py").read_bytes()
    assert addon == engine, "joyvasa_blender/core/protocol.py differs from engine/protocol.py: copy it again"


def test_addon_never_imports_engine_or_heavy_libraries():
    import ast

    forbidden = {"torch", "engine", "librosa", "cv2", "transformers", "scipy", "av"}
    for path in (REPO / "joyvasa_blender").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
