"""``python -m engine serve``: the warm worker (requests on stdin, protocol events on stdout).

See :mod:`engine.serve` and the request section of :mod:`engine.contract.protocol`.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: ARG001 - everything comes per request
    pass


def run(args: argparse.Namespace) -> int:  # noqa: ARG001
    from engine.serve import main

    return main()
