"""The add-on's layers: ``core/`` (bpy-free logic, tested without Blender) never imports the shell
(operators, panels, preferences); no module imports another round in a circle, counting imports
inside functions; and the add-on never imports the engine (its contract files are copies made by
tools/sync_contract.py) nor heavy libraries. Static (ast): nothing is imported."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ADDON = REPO / "joyvasa_blender"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ADDON.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports() -> dict[str, set[str]]:
    """module -> the add-on modules it imports, anywhere in the file. ``from . import runtime``
    imports ``runtime`` (the package is already loading), not the package's ``__init__``."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names]
                names = [s for s in subs if s in mods] + ([base] if any(s not in mods for s in subs) else [])
            else:
                continue
            targets |= {t for t in names if t in mods and t != name}
        graph[name] = targets
    return graph


def test_core_never_imports_the_shell() -> None:
    bad = sorted(f"{a} imports {b}" for a, targets in imports().items() if a.startswith("joyvasa_blender.core")
                 for b in targets if not b.startswith("joyvasa_blender.core"))
    assert bad == [], "\n".join(bad)


def test_no_import_circle() -> None:
    graph = imports()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_addon_never_imports_engine_or_heavy_libraries() -> None:
    forbidden = {"torch", "engine", "librosa", "cv2", "transformers", "scipy", "av"}
    for path in ADDON.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def test_every_engine_start_goes_through_spawn_engine() -> None:
    """One way to start the engine (core/engine_client.spawn_engine: one-shot runs, the warm worker,
    Check Engine, downloads): no other ``subprocess.Popen`` in the add-on, except the engine
    environment's setup steps (venv and pip, not the engine) in StepRunner."""
    allowed = {("joyvasa_blender/core/engine_client.py", "spawn_engine"),
               ("joyvasa_blender/core/engine_client.py", "_run")}        # StepRunner._run: venv/pip steps
    found = set()
    for path in ADDON.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Attribute) and node.attr == "Popen" and isinstance(node.ctx, ast.Load) \
                        and isinstance(node.value, ast.Name) and node.value.id == "subprocess":
                    parent_call = any(isinstance(c, ast.Call) and c.func is node for c in ast.walk(fn))
                    if parent_call:
                        found.add((path.relative_to(REPO).as_posix(), fn.name))
    assert found <= allowed, sorted(found - allowed)
    assert ("joyvasa_blender/core/engine_client.py", "spawn_engine") in found
