"""Nothing under joyvasa_blender/core/ may import bpy (or anything Blender-only).

Checked two ways: statically (every import statement in every file, at any depth, including
imports inside functions) and dynamically (importing every core module in a fresh interpreter
where ``bpy`` cannot be imported)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "joyvasa_blender" / "core"
BLENDER_ONLY = {"bpy", "bpy_extras", "mathutils", "bmesh", "gpu", "blf", "aud", "bl_ui", "addon_utils"}


def _imported_names(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level >= 2:
            # `from .. import x` from core/ reaches the bpy shells
            names.append("." * node.level + (node.module or ""))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in
              {"import_module", "__import__"} and node.args and isinstance(node.args[0], ast.Constant)):
            names.append(str(node.args[0].value))
    return names


def core_files() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 6, f"core/ looks empty: {files}"
    return files


def test_no_core_file_imports_blender_modules_or_the_shells():
    bad = []
    for path in core_files():
        for name in _imported_names(path):
            if name.split(".")[0] in BLENDER_ONLY or name.startswith(".."):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "core/ must stay bpy-free:\n" + "\n".join(bad)


def test_core_modules_import_where_bpy_is_missing():
    mods = [".".join(p.relative_to(REPO).with_suffix("").parts) for p in core_files()]
    mods = [m[:-len(".__init__")] if m.endswith(".__init__") else m for m in mods]
    code = ("import sys, importlib\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] in {sorted(BLENDER_ONLY)!r}:\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            f"for m in {mods!r}:\n"
            "    importlib.import_module(m)\n"
            "print('ok', len(sys.modules))\n")
    cp = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0 and cp.stdout.startswith("ok"), cp.stderr[-2000:]
