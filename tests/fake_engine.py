"""A fake engine that obeys the JSON-lines contract by replaying a transcript.

Used as the add-on's "engine Python": the add-on runs ``<python> -m engine <command> ...``;
a wrapper script (see ``write_wrapper``) runs this file with those arguments instead. The
scenario is the transcript ``$JOYVASA_FAKE_TRANSCRIPT`` (a path, or a name in tests/contract/),
default ``<command>_ok``. Transcript lines are protocol events (``seq``, ``t`` and a hello's ``protocol`` are filled in)
or directives:

    {"_fake": "sleep", "s": 0.1}          pause
    {"_fake": "write_motion"}             copy tests/contract/motion_v1.npz to --out
    {"_fake": "write_video"}              write a small mp4 at --fps to --out (needs PyAV), as long
                                          as --audio (or "seconds": S, to fake a truncated render)
    {"_fake": "write_png"}                write a 16x16 PNG to --out (the crop preview)
    {"_fake": "stderr", "text": "..."}    a log line on stderr
    {"_fake": "hang"}                     wait until cancelled (stdin "cancel" or SIGINT)
    {"_fake": "exit", "code": 1}          exit now with that code

Strings may contain ``$OUT`` (the --out path). A cancel emits ``cancelled`` and exits 130.
``-c CODE`` runs CODE (so interpreter checks work); ``doctor --json`` prints a JSON report;
``edit`` runs the REAL ``engine edit`` (pure numpy, no weights, no sampling), so controls
reach the keyed motion exactly as with the real engine.

``-m engine run --job -`` reads the job (engine/jobs.py wire form) from the first stdin line and
plays the transcript of its command, like the real one-shot engine.
``-m engine serve`` is the warm worker: a ``hello`` with command "serve", then per ``run``
request the transcript of its command (every event stamped with the request's ``job``; a
``hang`` ends in ``cancelled`` and the worker keeps serving; ``exit`` kills the whole worker, as
a crash would); ``release`` answers ``done``; end of stdin exits 0. With
``$JOYVASA_FAKE_ARGV_LOG`` every process start, every one-shot job (``["job", {...}]``) and every
request is logged.

Live sessions (``live_start`` / ``live_stop`` / ``cancel``, protocol 1.5; see :func:`live_session`):
the fake streams the rows of tests/contract/motion_v1.npz (cycled) as ``live_frame`` events in
hops, paced at real time (or as fast as it can: source file with pace "fast"), with
``live_started`` / ``live_stats``, and at ``live_stop`` (or the end of a file source) writes the
captured WAV and a motion file holding exactly the streamed rows, then ``done``. A ``mic`` named
"Missing Device" ends in error ``audio_device``; ``$JOYVASA_FAKE_PORTAUDIO=missing`` in
``portaudio_missing``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTRACT = HERE / "contract"

class _Flag:
    """Cancel flag safe to set from a signal handler (threading.Event.set() there can deadlock
    when the signal interrupts the main thread inside Event.wait(), which holds the same lock)."""

    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        self.value = True

    def is_set(self) -> bool:
        return self.value

    def wait(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while not self.value and time.monotonic() < end:
            time.sleep(min(0.02, max(0.0, end - time.monotonic())))
        return self.value


_cancel = _Flag()
_emit_lock = threading.Lock()   # a live session's thread emits too
_seq = 0
_t0 = time.monotonic()


def write_wrapper(path: Path, python: str = sys.executable) -> Path:
    """Create an executable that looks like an interpreter but runs this fake engine."""
    path.write_text(f'#!/bin/sh\nexec "{python}" "{Path(__file__).resolve()}" "$@"\n')
    path.chmod(0o755)
    return path


def contract_protocol() -> list[int]:
    """[major, minor] of the contract (engine/contract/protocol.py): a hello never states a stale version."""
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    from engine.contract.protocol import PROTOCOL_MAJOR, PROTOCOL_MINOR

    return [PROTOCOL_MAJOR, PROTOCOL_MINOR]


def emit(event: dict) -> None:
    global _seq
    if event.get("type") == "hello" and "v" not in event:   # protocol_v2.jsonl states a future major itself
        event = {**event, "protocol": event.get("protocol") or contract_protocol()}
    with _emit_lock:
        event = {"v": event.get("v", 1), "type": event["type"], "seq": _seq,
                 **{k: v for k, v in event.items() if k not in ("v", "type", "seq")}}
        event.setdefault("t", round(time.monotonic() - _t0, 4))   # live_frame's t is its audio time
        _seq += 1
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def option(args: list[str], flag: str, default: str | None = None) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else default


def subst(obj, out: str):
    if isinstance(obj, str):
        return obj.replace("$OUT", out)
    if isinstance(obj, list):
        return [subst(x, out) for x in obj]
    if isinstance(obj, dict):
        return {k: subst(v, out) for k, v in obj.items()}
    return obj


def write_video(out: str, fps: float, n_frames: int) -> None:
    import av  # the main venv has PyAV
    import numpy as np

    with av.open(out, "w") as c:
        st = c.add_stream("mpeg4", rate=int(round(fps)))
        st.width = st.height = 64
        st.pix_fmt = "yuv420p"
        for i in range(n_frames):
            img = np.full((64, 64, 3), (i * 5) % 255, dtype=np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)


def write_png(out: str, size: int = 16) -> None:
    """A grey gradient PNG with the standard library only."""
    import struct
    import zlib

    rows = b"".join(b"\x00" + bytes((x * 16) % 256 for x in range(size) for _ in range(3)) for _ in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    Path(out).write_bytes(png)


def cancelled(stage: str = "motion") -> None:
    # a second SIGINT during interpreter shutdown (handlers revert to the default) would turn
    # exit 130 into "killed by SIGINT": ignore it from here on, as the real engine does
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    emit({"type": "cancelled", "at": {"stage": stage, "done": 0}})
    sys.exit(130)


def _stdin_reader() -> None:
    for line in sys.stdin:
        text = line.strip()
        if text == "cancel" or '"cancel"' in text:
            _cancel.set()
            return


#: a switch pair's negative flag, by its job key (the engine's options; see engine/jobs.py)
NEGATIVE_FLAGS = {"smooth": "--no-smooth", "relative": "--absolute", "stitching": "--no-stitching",
                  "normalize_lip": "--no-normalize-lip", "pasteback": "--no-pasteback"}


def job_argv(job: dict) -> list[str]:
    """A job dict (engine/jobs.py wire form) as the command line it stands for, for transcripts
    (``--out``, ``--fps``) and the argv log: True = the flag, False = the negative flag of a
    switch pair (else omitted), None = omitted."""
    out: list[str] = []
    for k, v in job.items():
        if k in ("schema", "version", "command"):
            continue
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif v is False:
            out += [NEGATIVE_FLAGS[k]] if k in NEGATIVE_FLAGS else []
        elif v is not None:
            out += [flag, str(v)]
    return out


def play(path: Path, args: list[str], job: str | None = None) -> int | None:
    """Replay one transcript. Returns an exit code when the process must end (``exit``), else None."""
    out = option(args, "--out", "") or ""
    fps = float(option(args, "--fps", "25") or 25)
    stamp = {"job": job} if job is not None else {}
    ended = False  # a done/error/cancelled was sent: a following `exit` is the one-shot's normal end
    for raw in path.read_text().splitlines():
        if not raw.strip():
            continue
        if _cancel.is_set():
            if job is None:
                cancelled()
            emit({"type": "cancelled", "at": {"stage": "motion", "done": 0}, **stamp})
            return None
        item = subst(json.loads(raw), out)
        directive = item.get("_fake")
        if directive is None:
            emit({**item, **stamp})
            ended = ended or item.get("type") in ("done", "error", "cancelled")
        elif directive == "sleep":
            _cancel.wait(float(item.get("s", 0.1)))
        elif directive == "write_motion":
            shutil.copyfile(CONTRACT / "motion_v1.npz", out)
        elif directive == "write_video":
            audio = option(args, "--audio")
            seconds = 2.0
            try:
                import soundfile
                seconds = soundfile.info(audio).duration
            except Exception:  # noqa: BLE001 - a fake: fall back to 2 s
                pass
            seconds = float(item.get("seconds", seconds))
            seconds = float(os.environ.get("JOYVASA_FAKE_VIDEO_SECONDS") or seconds)   # e.g. a truncated file
            write_video(out, fps, max(1, int(round(seconds * fps))))
        elif directive == "write_png":
            write_png(out)
        elif directive == "stderr":
            print(item.get("text", ""), file=sys.stderr, flush=True)
        elif directive == "hang":
            while not _cancel.wait(0.05):
                pass
            if job is None:
                cancelled(item.get("stage", "motion"))
            emit({"type": "cancelled", "at": {"stage": item.get("stage", "motion"), "done": 0}, **stamp})
            return None
        elif directive == "exit":
            sys.stdout.flush()
            code = int(item.get("code", 0))
            if job is not None and (code == 0 or ended):  # a one-shot's normal end: keep serving
                return None
            return code
    if _cancel.is_set():
        if job is None:
            cancelled()
        emit({"type": "cancelled", "at": {"stage": "motion", "done": 0}, **stamp})
    return None


def transcript_for(command: str) -> Path:
    name = os.environ.get("JOYVASA_FAKE_TRANSCRIPT") or f"{command}_ok"
    return Path(name) if name.endswith(".jsonl") and os.path.sep in name else CONTRACT / f"{Path(name).stem}.jsonl"


def serve() -> int:
    """The fake warm worker (see the module docstring)."""
    import queue as _queue

    log = os.environ.get("JOYVASA_FAKE_ARGV_LOG")
    requests: "_queue.Queue[dict | None]" = _queue.Queue()
    current: dict = {"job": None}
    live: dict = {"session": None}

    def reader() -> None:
        for line in sys.stdin:
            try:
                req = json.loads(line)
            except ValueError:
                emit({"type": "error", "code": "bad_request", "message": "not JSON", "fatal": False})
                continue
            if req.get("type") == "cancel":
                if live["session"] is not None and req.get("job") == live["session"].job:
                    live["session"].cancel.set()
                elif req.get("job") in (None, current["job"]):
                    _cancel.set()
                continue
            requests.put(req)
        requests.put(None)

    emit({"type": "hello", "engine_version": "fake", "python": sys.version.split()[0],
          "torch": None, "device": "unknown", "dtype": "unknown", "command": "serve",
          "capabilities": {"commands": ["motion", "animate", "doctor"], "requests": ["run", "cancel", "release", "live_start", "live_stop"]}})
    threading.Thread(target=reader, daemon=True).start()
    while True:
        req = requests.get()
        if req is None:
            return 0
        if log:
            with open(log, "a") as fh:
                fh.write(json.dumps(["serve-request", req.get("type"), req.get("command"), req.get("args")]) + "\n")
        job = req.get("job")
        if req.get("type") == "release":
            emit({"type": "done", "outputs": {}, "released": 1, **({"job": job} if job else {})})
            continue
        if req.get("type") == "live_stop":       # in order after its live_start (never ahead of it)
            if live["session"] is not None and job == live["session"].job:
                live["session"].stop.set()
            else:
                emit({"type": "error", "code": "bad_request", "message": "live_stop: no live session of that job",
                      "fatal": False, **({"job": job} if job else {})})
            continue
        if live["session"] is not None and live["session"].thread.is_alive():
            emit({"type": "error", "code": "bad_request", "job": job, "fatal": False,
                  "message": "a live session is running: stop it first"})
            continue
        if req.get("type") == "live_start":
            live["session"] = LiveSession(job, req.get("args") or {})
            continue
        command = req.get("command")
        if command == "doctor":
            doctor_job((req.get("args") or {}).get("weights"), job)
            continue
        current["job"] = job
        _cancel.value = False
        code = play(transcript_for(command), job_argv(req.get("args") or {}), job=job)
        current["job"] = None
        if code is not None:
            return code


class LiveSession:
    """The fake live session (see the module docstring): one thread, paced by the audio clock."""

    def __init__(self, job: str | None, args: dict) -> None:
        self.job, self.args = job, args
        self.stop, self.cancel = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _emit(self, ev: dict) -> None:
        emit({**ev, "job": self.job})

    def _audio(self):
        """(samples int16 or None = endless microphone, error event or None)."""
        import wave

        import numpy as np

        a = self.args
        if a.get("source") == "mic":
            if os.environ.get("JOYVASA_FAKE_PORTAUDIO") == "missing":
                return None, {"code": "portaudio_missing",
                              "message": "PortAudio is missing: install libportaudio2 (sudo apt install libportaudio2)"}
            if str(a.get("mic") or "") == "Missing Device":
                return None, {"code": "audio_device", "message": "input device 'Missing Device' not found"}
            return None, None
        try:
            with wave.open(str(a.get("audio")), "rb") as w:
                data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())[:, 0]
                if w.getframerate() != 16000:   # a fake: nearest-sample resampling is enough
                    idx = (np.arange(int(len(data) * 16000 / w.getframerate())) * w.getframerate() / 16000).astype(int)
                    data = data[idx]
        except (OSError, EOFError, wave.Error) as exc:
            return None, {"code": "audio_invalid", "message": f"cannot read {a.get('audio')}: {exc}"}
        return data.copy(), None

    def _run(self) -> None:
        import numpy as np

        a = self.args
        hop, look = int(a.get("hop") or 5), int(a.get("lookahead") or 2)
        fast = a.get("source") == "file" and a.get("pace") == "fast"
        audio, err = self._audio()
        if err is not None:
            self._emit({"type": "error", "fatal": False, **err})
            return
        with np.load(CONTRACT / "motion_v1.npz") as z:
            src = {k: z[k] for k in z.files}
        offset, rate = -0.08, 16000
        total = None if audio is None else len(audio)
        start = time.monotonic()
        predicted = (hop + look) / 25 + 0.05
        self._emit({"type": "live_started", "rate": rate, "fps": 25, "hop": hop, "lookahead": look,
                    "source": a.get("source"), "delay_s": predicted})
        sent, last_stats, received = 0, start, 0

        def commit(upto: int) -> None:
            nonlocal sent
            while sent < upto:
                i = sent % len(src["yaw"])
                self._emit({"type": "live_frame", "frame": sent, "t": round(offset + sent / 25, 6),
                            "wall": round(time.monotonic() - start, 4), "sample": received,
                            "motion": {"pitch": float(src["pitch"][i]), "yaw": float(src["yaw"][i]),
                                       "roll": float(src["roll"][i]), "scale": float(src["scale"][i]),
                                       "trans": [float(x) for x in src["t"][i]],
                                       "exp": [float(x) for x in src["exp"][i].reshape(-1)]}})
                sent += 1

        while True:
            if self.cancel.is_set():
                self._emit({"type": "cancelled", "at": {"stage": "live", "done": sent}})
                return
            now = time.monotonic()
            received = (total if fast else int((now - start) * rate)) if total is not None else int((now - start) * rate)
            if total is not None:
                received = min(received, total)
            ended = self.stop.is_set() or (total is not None and received >= total)
            avail = int((received / rate - offset) * 25)          # frames whose audio has arrived
            if ended:
                commit(max(avail, sent))                           # flush: the look-ahead is not needed any more
                break
            commit(max(sent, (avail - look) // hop * hop))
            if now - last_stats >= 1.0:
                last_stats = now
                self._emit({"type": "live_stats", "delay_s": predicted, "window_s": 0.02, "window_mean_s": 0.02,
                            "queue": 0, "dropped": 0, "lag_s": 0.0, "frames": sent})
            if not fast:
                self.stop.wait(0.01)
        out = str(a.get("out") or "live_take.npz")
        wav = str(a.get("wav") or os.path.splitext(out)[0] + ".wav")
        idx = np.arange(sent) % len(src["yaw"])
        arrays = {k: (v[idx] if getattr(v, "ndim", 0) >= 1 and len(v) == len(src["yaw"]) else v) for k, v in src.items()}
        arrays.update(n_frames=np.int32(sent), audio_offset_s=np.float32(offset),
                      audio_duration_s=np.float32(received / rate), seed=np.int64(a.get("seed") or 0))
        samples = np.zeros(received, "<i2") if audio is None else audio[:received]
        self._write(out, wav, arrays, samples, rate)
        self._emit({"type": "done", "outputs": {"motion_npz": out, "audio_wav": wav}, "frames": sent})

    @staticmethod
    def _write(out: str, wav: str, arrays: dict, samples, rate: int) -> None:
        """Both files or neither: temporary names, then renamed."""
        import wave

        import numpy as np

        tmp_npz, tmp_wav = out + ".part.npz", wav + ".part"
        np.savez(tmp_npz, **arrays)
        with wave.open(tmp_wav, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(samples.astype("<i2").tobytes())
        os.replace(tmp_wav, wav)
        os.replace(tmp_npz, out)


FAKE_MICROPHONES = {"devices": [{"index": 0, "name": "Fake USB Mic", "default": True},
                                 {"index": 3, "name": "Fake Headset", "default": False}]}


def fake_devices() -> dict:
    """doctor's devices; JOYVASA_FAKE_GPU_WARNING=1: an NVIDIA machine with a CPU-only torch."""
    if os.environ.get("JOYVASA_FAKE_GPU_WARNING") == "1":
        line = ("CPU only: your torch build (fake+cpu) has no CUDA although an NVIDIA GPU is present "
                "(NVIDIA Fake RTX): recreate the environment")
        return {"available": ["cpu"], "auto": "cpu", "auto_dtype": "float32", "in_use": line, "gpu_warning": True}
    return {"available": ["cpu"], "auto": "cpu", "auto_dtype": "float32",
            "in_use": "CPU only: no GPU found (rendering takes seconds per frame)", "gpu_warning": False}


def doctor_report(weights: str | None, who: str = "fake engine") -> dict:
    return {"versions": {"engine": "fake", "python": sys.version.split()[0], "torch": None},
            "devices": fake_devices(), "microphones": FAKE_MICROPHONES,
            "weights": {"root": weights, "files": {}, "groups": {}}, "ok": True, "next": [f"Ready ({who})"],
            "synthetic": os.environ.get("JOYVASA_FAKE_SYNTHETIC") == "1"}


def doctor_job(weights: str | None, job: str | None = None) -> None:
    """A doctor job (a serve request or ``run --job``): hello, then done with the report."""
    stamp = {"job": job} if job else {}
    emit({"type": "hello", **stamp, "engine_version": "fake", "python": "3", "torch": None, "device": "cpu",
          "dtype": "float32", "command": "doctor"})
    emit({"type": "done", **stamp, "outputs": {}, "ok": True,
          "report": doctor_report(weights, "fake worker" if job else "fake engine")})


def main(argv: list[str]) -> int:
    if argv[:1] == ["-c"]:
        exec(compile(argv[1], "<fake -c>", "exec"), {"__name__": "__main__"})
        return 0
    if argv[:2] != ["-m", "engine"] or len(argv) < 3:
        print(f"fake engine: unexpected arguments {argv}", file=sys.stderr)
        return 2
    command, args = argv[2], argv[3:]
    log = os.environ.get("JOYVASA_FAKE_ARGV_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps([command] + args) + "\n")
    if command == "run":       # `engine run --job -`: the job is the first stdin line
        job = json.loads(sys.stdin.readline() or "{}")
        progress = args[args.index("--progress"):args.index("--progress") + 2] if "--progress" in args else []
        command, args = str(job.get("command")), job_argv(job) + progress
        if log:
            with open(log, "a") as fh:
                fh.write(json.dumps(["job", job]) + "\n")
        if command == "doctor":
            doctor_job(job.get("weights"))
            return 0
    if command == "serve":
        return serve()
    if command == "doctor":
        print(json.dumps(doctor_report(option(args, "--weights")), indent=1))
        return 0
    if command == "crop" and "--json" in args:   # the framing check: 'noface' in the file name = no face
        if "noface" in Path(option(args, "--image", "") or "").name:
            print(json.dumps({"error": "no_face", "message": "no face found in the portrait; pass --crop points:..."}))
            return 1
        print(json.dumps({"method": "fake", "box": [0, 0, 10, 10]}))
        return 0
    if command == "edit" and not os.environ.get("JOYVASA_FAKE_TRANSCRIPT"):
        sys.path.insert(0, str(HERE.parent))
        from engine.cli import main as engine_main
        return engine_main(["edit", *args])
    signal.signal(signal.SIGINT, lambda *_: _cancel.set())
    threading.Thread(target=_stdin_reader, daemon=True).start()
    code = play(transcript_for(command), args)
    return 0 if code is None else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
