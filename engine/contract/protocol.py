"""JoyVASA engine <-> add-on protocol, version 1.5 (stdlib only).

This file is the single source of truth for the contract between ``engine/`` and
``joyvasa_blender/``. ``joyvasa_blender/core/contract/protocol.py`` is a byte-for-byte copy (a test
enforces it), because the add-on must never import engine code.

Transport
    UTF-8 JSON objects, one per ``\\n``-terminated line, on the engine's **stdout** (which
    carries nothing else; logs go to stderr). Requests travel the other way on stdin:
    a line ``{"v": 1, "type": "cancel"}`` (or the bare word ``cancel``) asks the engine to stop.

Every event has ``v`` (protocol major), ``type``, ``seq`` (0, 1, 2, ...) and ``t`` (seconds
since the engine started). Job events may carry ``job``.

Worker (``python -m engine serve``, minor 2): one request per stdin line, answered on stdout;
the worker first sends a ``hello`` with command "serve" and capabilities {commands, requests}.
    run      {"v": 1, "type": "run", "job": ID, "command": "motion"|"animate"|"crop"|"edit"|
              "export"|"doctor", "args": {...}}  args = the job's wire form (engine/jobs.py,
              schema "joyvasa.job" v1): the command's long options without "--", "-" -> "_",
              with JSON types (``{"audio": "a.wav", "out": "m.npz", "cfg_scale": 2.0,
              "smooth": false}``; a switch pair is its positive name: ``"smooth": false`` =
              ``--no-smooth``). 1.4: args are typed and checked by the job type (before: a
              command line for argparse, strings and ``"no_smooth": true`` accepted; now refused
              as bad_request naming the option). ``python -m engine run --job -`` takes the same
              object (with its "command") as a one-shot process. Every event of
              the request carries ``"job": ID``: hello, progress..., then exactly one of
              done / error / cancelled. Requests run one at a time, in order.
    cancel   {"v": 1, "type": "cancel", "job": ID}  (no job: the running request)
    release  {"v": 1, "type": "release", ["job": ID]}  frees every cached network and GPU
              memory; answered with ``done`` {outputs: {}, released: n}.
    live_start {"v": 1, "type": "live_start", "job": ID, "args": {...}}  (1.5) a live session:
              args = the ``live`` job's wire form (source file|pcm|mic, out, hop, lookahead, ...);
              events hello, live_started, live_frame..., live_stats..., then done/error/cancelled.
    push_pcm {"v": 1, "type": "push_pcm", "job": ID, "pcm16": BASE64, "rate": 16000}  (1.5) audio for
              a ``pcm`` session: mono int16 little-endian at 16 kHz, at most 1 s per request.
    live_stop {"v": 1, "type": "live_stop", "job": ID}  (1.5) end of audio: flush the stream, write
              the WAV and the motion file atomically, then ``done``. ``cancel`` writes nothing.
    While a live session runs the worker keeps reading stdin: a bad push_pcm, a push_pcm or
    live_stop with no session or another job, a second live_start or a run is one non-fatal
    bad_request, and the session goes on.
A malformed request gets an ``error`` (code bad_request, its job if it had one) and the worker
keeps serving; end of stdin = no more requests: the worker finishes the queue and exits 0.

Event types and their fields (optional fields in brackets)
    hello     engine_version, protocol [major, minor], python, torch, device, dtype,
              capabilities {samplers, regions, ...}, command
    progress  stage (load|audio|motion|render|encode|export|batch|download), done, total, unit
              (window|step|frame|file|job|byte), eta_s (null if unknown), rate (units/s);
              ``download`` (``fetch``, 1.3): done/total = bytes of the whole download, plus
              file (its path in the weights folder), file_done, file_total (its bytes),
              files_done, files_total
    artifact  kind (motion_npz|video|frames_dir|motion_export|crop_image|contact_sheet|
              driving_keypoints|weight_file), path
    warning   code, message
    error     code (one of ERROR_CODES), message, fatal
    framing   method, box, points, angle_deg, M_c2o (2x3: crop pixel -> pixel of the image file),
              crop_size, image_size [w, h], faces, face_index, lip_open (``crop``, ``animate``; 1.1),
              score (detector confidence or null: X-Pose animal faces, method ``xpose``)
    done      outputs {motion_npz?, video?, frames_dir?, motion_export?, crop_image?,
              driving_keypoints?, weights_dir?}, timings {stage: s},
              peak_mem {host_mb, [device_mb]}, [rtf], [breakdown {part: s}] (1.2: where the
              job's wall time went: startup, import, construct, load, audio, encode, sample,
              render, write), [breakdown_cpu {part: s}] (the same parts in process CPU
              seconds), [report] (doctor in serve), [released] (release)
    cancelled at {stage, done}
    live_started (1.5; first audio sample entered the session) rate 16000, fps 25, hop, lookahead,
              source (file|pcm|mic), delay_s (predicted playout delay D)
    live_frame (1.5; one per committed frame, in order, none dropped) frame (25 fps, from 0),
              t (NOT the engine clock here: the audio time in seconds the frame shows, the motion
              file's clock = audio_offset_s + frame / 25), wall (engine clock, s), sample (audio
              samples received when the frame was committed), motion {pitch, yaw, roll (deg),
              scale, trans [3], exp [63] (21x3 row-major)} = the row the take's motion file holds
    live_stats (1.5; about once a second) delay_s (steady-state D), window_s, window_mean_s, queue
              (samples waiting), dropped (frames), lag_s (audio received - audio committed), frames
    plan      (``fetch``, 1.3; before any download) dir, staging, host, files [{path, part, size,
              present, replaces, resume_from, hash}], download_files, download_bytes, total_bytes,
              free_bytes (null if unknown), licences [{part, title, licence}]

Compatibility: a reader refuses a different major version with one clear message, ignores
unknown fields and unknown event types, and still shows an ``error`` whose code it does not
know. Adding an optional field or event type bumps only the minor version.

Exit codes: 0 success, 1 error (an ``error`` event was printed), 2 bad command line,
130 cancelled (a ``cancelled`` event was printed, partial outputs removed).
"""
from __future__ import annotations

import json
import threading
import time
from typing import IO, Any

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 5

EVENT_TYPES = ("hello", "progress", "artifact", "warning", "error", "done", "cancelled", "framing", "plan",
               "live_started", "live_frame", "live_stats")
REQUEST_TYPES = ("run", "cancel", "release", "live_start", "push_pcm", "live_stop")
#: live sessions (1.5): the audio rate of push_pcm and live_frame's frame rate
LIVE_RATE = 16000
LIVE_FPS = 25
STAGES = ("load", "audio", "motion", "render", "encode", "export", "batch", "download")
ERROR_CODES = (
    "bad_request",        # invalid option (out of range, conflicting) or unusable input file (motion .npz)
    "audio_invalid",      # audio missing, unreadable, corrupt, empty or not finite
    "image_invalid",      # portrait missing, unreadable or corrupt
    "no_face",            # automatic crop found no face (use --crop points:... or X,Y,W,H)
    "weights_missing",    # an expected weight file is absent
    "weights_corrupt",    # a weight file is truncated, unsafe or has the wrong keys/shapes
    "output_unwritable",  # output folder not writable, output is a folder/file of the wrong kind,
                          # or --frames-dir holds other files (use --overwrite)
    "disk_full",          # not enough free space (checked before work, or the disk filled up)
    "oom",                # out of memory (CPU or GPU): smaller --batch, --dtype bfloat16, shorter clip
    "missing_dependency", # an engine Python package is absent/broken; message names the pip command
    "device_unavailable", # requested device (cuda/mps) is not available
    "offline",            # fetch: the weight host (HF_ENDPOINT) cannot be reached or HF_HUB_OFFLINE is set
    "download_failed",    # fetch: a download gave an HTTP error or a file of the wrong size/hash
    "audio_device",       # live: the microphone is missing, busy or was unplugged (doctor lists input devices)
    "portaudio_missing",  # live: the PortAudio library is absent (Linux: apt-get install libportaudio2)
    "internal",           # a bug: please report it with the stderr log
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130

#: a sanity cap only: real events are small, but a long ``message``/``outputs`` must still be read whole
MAX_LINE_BYTES = 16 * 1024 * 1024

# -- option catalog: the one list of each choice both sides offer (engine CLI, add-on menus) --------
#: motion samplers; ``ancestral`` with every trained step is upstream's exact sampler
SAMPLERS = ("ancestral", "ddim", "dpmpp_2m")
#: default denoising steps per sampler when none are given (None = every trained step)
DEFAULT_STEPS = {"ancestral": None, "ddim": 20, "dpmpp_2m": 10}
#: the engine's default sampler (fast mode, see engine/bench/motion.py)
DEFAULT_SAMPLER = "dpmpp_2m"
#: which part of the generated motion drives the portrait
REGIONS = ("all", "exp", "pose", "lip", "eyes")
#: positional-encoding variants of the motion DiT
PE_VARIANTS = ("head", "legacy")
#: classifier-free guidance combinations (identical for upstream's single condition)
CFG_MODES = ("incremental", "independent")
#: compute precisions (canonical names); DTYPE_ALIASES maps the spellings users type
DTYPES = ("auto", "float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "f32": "float32", "bf16": "bfloat16",
                 "fp16": "float16", "half": "float16", "f16": "float16"}


def canonical_dtype(name: str | None) -> str:
    """``bf16`` -> ``bfloat16`` etc.; raises ValueError for an unknown name."""
    text = (name or "auto").strip().lower()
    text = DTYPE_ALIASES.get(text, text)
    if text not in DTYPES:
        raise ValueError(f"unknown precision {name!r}: use one of {', '.join(DTYPES)} "
                         f"(or {', '.join(DTYPE_ALIASES)})")
    return text


class ProtocolError(ValueError):
    """A line that is not a valid protocol-v1 event."""


# -- JSON with limits: every JSON the engine reads from a user or a client ----------------------
#: nesting beyond this is no real request, controls or job file (and 100 000 ``[`` would blow
#: Python's recursion limit inside json.loads)
MAX_JSON_DEPTH = 64
#: digits of one JSON number: more is no real value (a 401-digit integer cannot become a float,
#: 5000 digits hit Python's int-conversion limit)
MAX_NUMBER_DIGITS = 100


class JSONLimitError(ValueError):
    """JSON text that is not UTF-8, too large, too deep or has an absurd number (message says which)."""


def _number(text: str) -> str:
    if len(text) > MAX_NUMBER_DIGITS:
        raise JSONLimitError(f"a number with {len(text)} characters (at most {MAX_NUMBER_DIGITS})")
    return text


def _no_constant(name: str) -> Any:
    raise JSONLimitError(f"{name} is not a JSON number (use a finite number)")


def _depth(text: str) -> int:
    """Deepest nesting of arrays/objects, ignoring brackets inside strings (C-speed regexes)."""
    import re

    if "[" not in text and "{" not in text:
        return 0
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    deepest = depth = 0
    for ch in re.findall(r"[\[\]{}]", bare):
        depth += 1 if ch in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_JSON_DEPTH:  # enough to refuse it
                break
    return deepest


def decode_utf8(data: bytes | bytearray, what: str, max_bytes: int = MAX_LINE_BYTES) -> str:
    """Strict UTF-8 text of at most ``max_bytes`` (JSONLimitError naming ``what`` otherwise)."""
    if len(data) > max_bytes:
        raise JSONLimitError(f"{what} is larger than {max_bytes // 1024} KiB")
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONLimitError(f"{what} is not UTF-8 text (byte {exc.start}: {bytes(data)[exc.start:exc.start + 1]!r}); "
                             "send or save it as UTF-8") from None


def loads_limited(text: str | bytes, what: str = "JSON", max_bytes: int = MAX_LINE_BYTES) -> Any:
    """``json.loads`` for untrusted text: strict UTF-8, at most ``max_bytes``, :data:`MAX_JSON_DEPTH`
    levels, :data:`MAX_NUMBER_DIGITS` characters per number, no NaN/Infinity. Every failure is a
    :class:`JSONLimitError` naming ``what`` (never a RecursionError or a traceback)."""
    if isinstance(text, (bytes, bytearray)):
        text = decode_utf8(text, what, max_bytes)
    elif len(text) > max_bytes:
        raise JSONLimitError(f"{what} is larger than {max_bytes // 1024} KiB")
    if text.startswith("\ufeff"):
        text = text[1:]
    depth = _depth(text)
    if depth > MAX_JSON_DEPTH:
        raise JSONLimitError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text, parse_int=lambda t: int(_number(t)), parse_float=lambda t: float(_number(t)),
                          parse_constant=_no_constant)
    except JSONLimitError as exc:
        raise JSONLimitError(f"{what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise JSONLimitError(f"{what} is not valid JSON: {exc}") from None
    except (RecursionError, ValueError, MemoryError) as exc:  # last line of defence
        raise JSONLimitError(f"{what} cannot be read as JSON: {type(exc).__name__}") from None


class EventWriter:
    """Writes protocol events as JSON lines; thread-safe; numbers ``seq`` and stamps ``t``."""

    def __init__(self, stream: IO[str] | None, job: str | None = None) -> None:
        self._stream = stream
        self._job = job
        self._seq = 0
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def clock(self) -> float:
        """The engine clock the events' ``t`` uses (seconds since this writer started)."""
        return time.monotonic() - self._t0

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            event: dict[str, Any] = {"v": PROTOCOL_MAJOR, "type": type_, "seq": self._seq,
                                     "t": round(time.monotonic() - self._t0, 4)}
            if self._job is not None:
                event["job"] = self._job
            event.update(fields)
            self._seq += 1
            if self._stream is not None:
                self._stream.write(json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n")
                self._stream.flush()
            return event


def parse_event(line: str | bytes) -> dict[str, Any] | None:
    """Parse one stdout line. Returns None for blank lines; raises ProtocolError otherwise
    when the line is not a JSON object of a compatible major version."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line:
        return None
    if len(line.encode("utf-8")) > MAX_LINE_BYTES:
        raise ProtocolError(f"protocol line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")
    try:
        event = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not a JSON line: {line[:120]!r}") from exc
    if not isinstance(event, dict) or "type" not in event:
        raise ProtocolError(f"not a protocol event: {line[:120]!r}")
    major = event.get("v")
    if major != PROTOCOL_MAJOR:
        raise ProtocolError(
            f"engine speaks protocol v{major}, this side understands v{PROTOCOL_MAJOR}: "
            "update the engine and the add-on together")
    return event


def hello_problem(event: dict[str, Any]) -> str | None:
    """Why a ``hello`` event's ``protocol`` [major, minor] cannot be spoken with (None: fine).

    A different major is refused with one message that tells the user to update both sides;
    a newer minor of the same major is fine (only optional additions)."""
    version = event.get("protocol")
    try:
        major, minor = int(version[0]), int(version[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return f"the engine's hello has no valid protocol version ({version!r}): update the engine and the add-on together"
    if major != PROTOCOL_MAJOR:
        newer = "newer" if major > PROTOCOL_MAJOR else "older"
        return (f"the engine speaks protocol {major}.{minor}, {newer} than this side's {PROTOCOL_MAJOR}.{PROTOCOL_MINOR}: "
                "update both the add-on and the engine to the same release")
    return None


def make_request(type_: str, job: str | None = None, **fields: Any) -> str:
    """One request line for the ``serve`` worker (``\n`` included)."""
    if type_ not in REQUEST_TYPES:
        raise ValueError(f"unknown request type {type_!r}")
    obj: dict[str, Any] = {"v": PROTOCOL_MAJOR, "type": type_}
    if job is not None:
        obj["job"] = str(job)
    obj.update(fields)
    return json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n"


def parse_request(line: str | bytes) -> dict[str, Any] | None:
    """Parse one stdin line of the worker: None for a blank line; ProtocolError when it is not
    a request this side understands (bare ``cancel`` is accepted as a cancel request). Never
    raises anything else: bytes are decoded here (strict UTF-8), JSON with :func:`loads_limited`."""
    if isinstance(line, (bytes, bytearray)):
        try:
            line = decode_utf8(line, "request line")
        except JSONLimitError as exc:
            raise ProtocolError(str(exc)) from None
    text = line.strip()
    if not text:
        return None
    if text == "cancel":
        return {"v": PROTOCOL_MAJOR, "type": "cancel"}
    try:
        obj = loads_limited(text, "request")
    except JSONLimitError as exc:
        raise ProtocolError(f"{exc}: {text[:120]!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"request is not a JSON object: {text[:120]!r}")
    if obj.get("v", PROTOCOL_MAJOR) != PROTOCOL_MAJOR:
        raise ProtocolError(f"request speaks protocol v{obj.get('v')!r:.40}, this worker understands v{PROTOCOL_MAJOR}")
    if obj.get("type") not in REQUEST_TYPES:
        raise ProtocolError(f"unknown request type {str(obj.get('type'))[:40]!r}: use one of {', '.join(REQUEST_TYPES)}")
    if "job" in obj and (isinstance(obj["job"], bool) or not isinstance(obj["job"], (str, int))):
        raise ProtocolError("request field 'job' must be a string")
    if "job" in obj:
        obj["job"] = str(obj["job"])
    if obj["type"] in ("live_start", "push_pcm", "live_stop") and "job" not in obj:
        raise ProtocolError(f"a {obj['type']} request needs a 'job' id")
    if obj["type"] == "live_start" and not isinstance(obj.get("args", {}), dict):
        raise ProtocolError("a live_start request's 'args' must be an object")
    if obj["type"] == "run":
        if "job" not in obj:
            raise ProtocolError("a run request needs a 'job' id")
        if not isinstance(obj.get("command"), str):
            raise ProtocolError("a run request needs a 'command'")
        if not isinstance(obj.get("args", {}), dict):
            raise ProtocolError("a run request's 'args' must be an object")
    return obj


def request_job(line: str | bytes) -> str | None:
    """The ``job`` of a line that failed :func:`parse_request`, when one can be read (for its error)."""
    try:
        obj = loads_limited(line, "request")
    except JSONLimitError:
        return None
    job = obj.get("job") if isinstance(obj, dict) else None
    return str(job) if isinstance(job, (str, int)) and not isinstance(job, bool) else None


def is_cancel_request(line: str | bytes) -> bool:
    """True for a stdin line asking the engine to cancel (``cancel`` or a cancel request)."""
    try:
        req = parse_request(line)
    except ProtocolError:
        return False
    return req is not None and req.get("type") == "cancel"


def format_event_for_humans(event: dict[str, Any]) -> str:
    """One readable line for logs and status bars."""
    kind = event.get("type")
    if kind == "progress":
        eta = event.get("eta_s")
        eta_txt = f", ETA {eta:.0f}s" if isinstance(eta, (int, float)) else ""
        return f"{event.get('stage')}: {event.get('done')}/{event.get('total')} {event.get('unit', '')}{eta_txt}"
    if kind == "error":
        return f"error [{event.get('code')}]: {event.get('message')}"
    if kind == "warning":
        return f"warning [{event.get('code')}]: {event.get('message')}"
    if kind == "artifact":
        return f"wrote {event.get('kind')}: {event.get('path')}"
    if kind == "done":
        return "done"
    if kind == "cancelled":
        return "cancelled"
    if kind == "hello":
        return f"engine {event.get('engine_version')} on {event.get('device')}"
    return json.dumps(event)


