"""The add-on's layers: it never imports the engine (its contract files are copies, tools/sync_contract.py)
nor heavy libraries."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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
