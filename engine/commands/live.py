"""``python -m engine live``: stream an audio file or the microphone into motion, live (docs/live.md).

    python -m engine live --audio FILE --out TAKE.npz [--hop H] [--lookahead F] [--pace realtime|fast]
                          [--seed S] [--weights W] [--mic [DEVICE]] [--livelink HOST:PORT]
                          [--vmc HOST:PORT] --progress json

Options -> :class:`engine.jobs.LiveJob` -> :func:`engine.pipeline.live.run_live`. Events (protocol
1.5): hello, live_started, live_frame (one per committed frame), live_stats (about once a second),
artifact, then done {outputs: {motion_npz, audio_wav}} / error / cancelled.

Stopping: the end of ``--audio`` ends the take. Ctrl+C (SIGINT) once = stop: flush the stream and
write the take (this is how a ``--mic`` take ends); twice, SIGTERM, or a ``cancel`` line on stdin =
cancel, nothing written.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
from typing import TYPE_CHECKING

from engine.commands.motion import add_motion_options, add_runtime_options
from engine.jobs import LIVE_PACES, LIVE_SCHEDULES, LiveJob
from engine.pipeline.context import Context
from engine.runner import Done, Reporter, run_protocol_command

if TYPE_CHECKING:
    from types import FrameType

    from engine.live.session import LiveSession


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--audio", default=None, help="audio file played as a live source (paced by --pace)")
    src.add_argument("--mic", nargs="?", const="default", default=None, metavar="DEVICE",
                     help="the microphone: default input device, or a name/index `engine doctor` lists")
    p.add_argument("--out", required=True, help="the take's motion .npz (written at the end, atomically)")
    p.add_argument("--wav", default=None, help="the captured audio .wav (default: --out with .wav)")
    p.add_argument("--pace", choices=LIVE_PACES, default="realtime",
                   help="--audio: realtime = as a microphone (default); fast = as fast as possible (TTS)")
    p.add_argument("--hop", type=int, default=None, help="H: frames committed per window (default: the stream's)")
    p.add_argument("--lookahead", type=int, default=None,
                   help="F: frames of look-ahead each committed frame waits for (default: the stream's)")
    p.add_argument("--schedule", choices=LIVE_SCHEDULES, default="live",
                   help="offline = upstream's exact schedule (needs --hop 100 --lookahead 0)")
    p.add_argument("--weights", default=None, help="weights folder (default $JOYVASA_WEIGHTS)")
    p.add_argument("--controls", default=None, help="art-direction controls .json, applied per frame")
    p.add_argument("--livelink", default=None, metavar="HOST:PORT",
                   help="also send Live Link Face UDP (Unreal), e.g. 127.0.0.1:11111")
    p.add_argument("--vmc", default=None, metavar="HOST:PORT",
                   help="also send VMC over OSC (VSeeFace, Warudo, VNyan), e.g. 127.0.0.1:39539")
    add_motion_options(p)
    add_runtime_options(p, "precision of the motion networks (default auto, as engine motion)")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout (live_frame per frame)")


def _stop_on_first_sigint(rep: Reporter, session: LiveSession) -> None:
    """SIGINT once = stop and keep the take; again = cancel (the runner's token)."""
    def on_sigint(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        if getattr(on_sigint, "stopped", False):
            rep.cancel.set()
        else:
            on_sigint.stopped = True  # type: ignore[attr-defined]
            session.stop()

    with contextlib.suppress(ValueError, OSError):  # not in the main thread: leave the runner's handler
        signal.signal(signal.SIGINT, on_sigint)


def run(args: argparse.Namespace) -> int:
    from engine.pipeline.live import run_live

    def body(rep: Reporter) -> Done:
        return run_live(LiveJob.from_args(args), Context(rep), on_session=lambda s: _stop_on_first_sigint(rep, s))

    return run_protocol_command("live", args.progress, body)
