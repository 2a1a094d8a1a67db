"""Run every parity group over a reference folder and print one line per reference array
(``python -m engine parity``): the driver of the group modules, apart from what they share
(engine/parity/__init__.py) so that no module of the package imports its own package back.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np

from engine.parity import INPUT_NAMES, ParityContext, ParityLine, compare

#: group modules in the order they run (later groups may reuse earlier results via ctx.cache)
GROUP_MODULES = ("engine.parity.stage_one", "engine.parity.motion", "engine.parity.anim")


def run_parity(ref_dir: Path, only: list[str] | None = None, out=sys.stdout) -> int:
    """Compare every (selected) reference array; return the number of failures.

    ``reference.npz`` holds the JoyVASA / LivePortrait arrays; a folder with ``xpose_reference.npz``
    gets the X-Pose lines (``XPOSE_*``, engine/parity/xpose.py); either or both may be present."""
    ref_path = Path(ref_dir) / "reference.npz"
    xpose_path = Path(ref_dir) / "xpose_reference.npz"
    if not ref_path.is_file() and not xpose_path.is_file():
        raise FileNotFoundError(f"{ref_path} (or xpose_reference.npz) not found: --reference must be a reference folder")
    failures = 0
    if xpose_path.is_file():
        from engine.parity import xpose

        failures += xpose.run(Path(ref_dir), only, out)
    if not ref_path.is_file():
        return failures
    ref = np.load(ref_path, allow_pickle=False)
    names = [n for n in ref.files if not only or n.startswith(tuple(only))]
    ctx = ParityContext(Path(ref_dir), ref)
    computed: dict[str, np.ndarray] = {}
    reasons: dict[str, str] = {}
    wanted = {n for n in names if n not in INPUT_NAMES}
    for module_name in GROUP_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        mine = {n for n in wanted if n.startswith(tuple(module.PREFIXES))}
        if not mine:
            continue
        try:
            computed.update(module.compute(ctx, mine))
        except NotImplementedError as exc:
            for n in mine:
                reasons[n] = str(exc) or "not implemented"
    for name in names:
        if name in INPUT_NAMES:
            line = ParityLine(name, "input")
        elif name in computed:
            line = compare(name, computed[name], ctx.array(name))
        else:
            line = ParityLine(name, "skipped", note=reasons.get(name, "not computed by this engine yet"))
        failures += line.status == "FAIL"
        print(line.render(), file=out, flush=True)
    return failures
