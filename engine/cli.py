"""Command-line front door: ``python -m engine <command> ...``.

Each sub-command lives in its own module under :mod:`engine.commands` and exposes
``add_arguments(parser)`` and ``run(args) -> int``; a job command's ``run`` only turns the parsed
options into its typed job (engine/jobs.py, ``Job.from_args``) and hands it to
:func:`engine.pipeline.run_pipeline`. Modules are imported lazily so that
``python -m engine --help`` and the cheap commands never pay for importing torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from engine import __version__

#: command name -> (module under engine.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "parity": ("parity", "compare the engine with upstream reference arrays"),
    "motion": ("motion", "speech audio -> motion .npz (head pose + expression)"),
    "animate": ("animate", "portrait + audio (or motion) -> mp4 / PNG sequence"),
    "crop": ("crop", "frame the face only: the 512x512 crop and where it sits in the picture"),
    "doctor": ("doctor", "report versions, device and the state of every weight file"),
    "bench": ("bench", "benchmarks that print numbers (render, motion, animate)"),
    "batch": ("batch", "many motion/animate jobs from a JSON file, locally or on a Ray cluster"),
    "export": ("export", "motion .npz -> Live Link Face CSV, LivePortrait template .pkl, BVH"),
    "serve": ("serve", "warm worker: JSON requests on stdin, networks stay loaded between takes"),
    "edit": ("edit", "re-apply art-direction controls to a motion .npz (no sampling, no torch)"),
    "fetch": ("fetch", "download the official weights (HF_ENDPOINT mirrors, resumable), then check them"),
    "run": ("run", "run one job given as JSON (engine/jobs.py wire form; what the Blender add-on sends)"),
    "live": ("live", "stream an audio file or the microphone into motion, live (events per frame, a take at the end)"),
}


def build_parser(load_commands: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"joyvasa-engine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if load_commands is None or name in load_commands:
            module = importlib.import_module(f"engine.commands.{module_name}")
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = [a for a in argv[:1] if a in COMMANDS]
    try:
        parser = build_parser(load_commands=wanted)
    except ImportError as exc:  # a package missing already while building the options (e.g. torch)
        return _failed_before_parsing(wanted[0] if wanted else "engine", argv, exc)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args._module.run(args) or 0)


def _failed_before_parsing(command: str, argv: list[str], exc: ImportError) -> int:
    """Report through the protocol runner (hello, then one coded error) although nothing is parsed."""
    from engine.runner import run_protocol_command

    json_mode = any(a == "--progress=json" for a in argv) or any(
        a == "--progress" and b == "json" for a, b in zip(argv, argv[1:]))

    def body(reporter: object) -> dict[str, str]:
        raise exc

    return run_protocol_command(command, "json" if json_mode else "text", body)
