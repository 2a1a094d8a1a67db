"""The engine's layers point one way: entry points -> services (serve, batch) -> pipeline -> domain
packages -> io/models -> base (errors, the contract, jobs). Every import counts, at the top of a
file or inside a function, so a deferred import cannot hide an arrow that points back up; and no
modules import each other round in a circle, not even a package and its own modules, and not
even for type annotations only. Static (ast): nothing is imported, torch is never loaded."""
from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"

#: (layer, rank), low to high; a module may import only modules of a lower or equal (layer, rank)
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("engine", "engine.errors", "engine.contract", "engine.jobs", "engine.profiling", "engine.fileio",
              "engine.pathguard", "engine.stdin_requests")),
    ("io", ("engine.audio", "engine.checkpoints", "engine.device", "engine.weights", "engine.models",
            "engine.sampling", "engine.fetch", "engine.preflight", "engine.runner")),
    ("motion", ("engine.motion",)),
    ("framing", ("engine.framing",)),
    ("render", ("engine.render",)),
    ("export", ("engine.export",)),
    ("live", ("engine.live",)),
    ("pipeline", ("engine.pipeline",)),
    ("service", ("engine.serve", "engine.batch")),
    ("entry", ("engine.commands", "engine.cli", "engine.bench", "engine.parity", "engine.__main__")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int:
    best = None
    for i, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    assert best is not None, f"{module} has no layer: add it to LAYERS"
    return best[0]


def imports(typing_too: bool = False) -> dict[str, set[str]]:
    """module -> the engine modules it imports (anywhere in the file; ``typing_too``: also the
    ``if TYPE_CHECKING:`` imports, which are annotations only and may point anywhere downwards)."""
    mods = {module_name(p): p for p in ENGINE.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and getattr(block.test, "id", getattr(block.test, "attr", "")) == "TYPE_CHECKING"
                       for stmt in block.body for n in ast.walk(stmt)}   # annotations only: not a runtime import
        for node in ast.walk(tree):
            if id(node) in typing_only and not typing_too:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            targets |= {t for t in names if t in mods and t != name}
        out[name] = targets
    return out


def test_every_module_has_a_layer() -> None:
    for name in imports():
        rank(name)


def test_no_import_points_to_a_higher_layer() -> None:
    bad = sorted(f"{a} ({LAYERS[rank(a)][0]}) imports {b} ({LAYERS[rank(b)][0]})"
                 for a, targets in imports().items() for b in targets if rank(b) > rank(a))
    assert bad == [], "\n".join(bad)


def test_no_import_circle() -> None:
    graph = imports(typing_too=True)
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
