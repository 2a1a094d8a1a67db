"""One path identity check for every input and output of a run, and the one way a job id or a
name becomes a file name.

Why: comparing spellings (``Path.absolute()``) let ``out/../portrait.png`` or a path through a
symlinked folder overwrite the portrait, ``--image frames/frame_00007.png --frames-dir frames``
delete it as a stale frame, and a batch job id ``../../victim`` write its done marker over a
user's file. Here two paths are the same file when their real paths (symlinks and ``..``
resolved) are equal or they share an inode (hard links, case-insensitive file systems); every
command asks :func:`check_run_paths` before any work, and names made from user text go
through :func:`safe_name`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Union

from engine.errors import BadRequest, OutputError

PathLike = Union[str, "os.PathLike[str]"]
#: bytes in one file name on every common file system (ext4, APFS, NTFS counts UTF-16 units)
NAME_MAX = 255
#: Windows device names: a file called ``CON`` or ``nul.json`` is a device there
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9]|conin\$|conout\$)(\..*)?$", re.IGNORECASE)
_FRAME_RE = re.compile(r"^frame_\d{5,}\.png$")


def real_path(path: PathLike) -> Path:
    """Absolute path with ``~``, symlinks and ``..`` resolved (the parts that exist)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name one file: equal real paths or the same inode."""
    try:
        if os.path.samefile(a, b):
            return True
    except (OSError, ValueError):
        pass
    ra, rb = real_path(a), real_path(b)
    return os.path.normcase(str(ra)) == os.path.normcase(str(rb))


def in_frames_folder(path: PathLike, folder: PathLike) -> bool:
    """True when ``path`` is a ``frame_NNNNN.png`` directly in ``folder`` (a run may replace or
    delete exactly those files there)."""
    rp = real_path(path)
    return bool(_FRAME_RE.match(rp.name)) and same_file(rp.parent, folder)


def _clean(named: Mapping[str, PathLike | None] | None) -> dict[str, Path]:
    return {k: Path(os.fspath(v)) for k, v in (named or {}).items() if v not in (None, "")}


def check_run_paths(inputs: Mapping[str, PathLike | None], outputs: Mapping[str, PathLike | None],
                    frames_dirs: Mapping[str, PathLike | None] | None = None,
                    may_replace: tuple[tuple[str, str], ...] = ()) -> None:
    """Refuse a run whose outputs would overwrite or delete one of its inputs or each other.

    Keys are the options (``--out``) the paths came from, for the message. ``frames_dirs`` are
    PNG-sequence folders: an input or another output that is a frame file there would be replaced
    or removed. ``may_replace`` lists (output, input) pairs a command allows on purpose
    (``edit --out`` may be its ``--motion``: it is read whole before the new file replaces it).
    """
    ins, outs, dirs = _clean(inputs), _clean(outputs), _clean(frames_dirs)
    for o_opt, o in outs.items():
        for i_opt, i in ins.items():
            if (o_opt, i_opt) not in may_replace and same_file(o, i):
                raise OutputError(f"output {o_opt} {o} is also an input ({i_opt} {i}): it would be overwritten; "
                                  "choose another output name")
    items = list(outs.items()) + list(dirs.items())
    for n, (a_opt, a) in enumerate(items):
        for b_opt, b in items[n + 1:]:
            if same_file(a, b):
                raise OutputError(f"{a_opt} {a} and {b_opt} {b} are the same path; give each output its own name")
    for d_opt, d in dirs.items():
        for i_opt, i in ins.items():
            if same_file(i, d):
                raise OutputError(f"{d_opt} {d} is also an input ({i_opt}); choose another folder")
            if in_frames_folder(i, d):
                raise OutputError(f"{i_opt} {i} is a frame file inside {d_opt} {d}: writing the frames would "
                                  "replace or delete it; move it out of that folder or choose another folder")
        for o_opt, o in outs.items():
            if in_frames_folder(o, d):
                raise OutputError(f"{o_opt} {o} lies inside {d_opt} {d} with a frame's name; choose another name")


def safe_name(text: str, what: str, suffix: str = "") -> str:
    """``text + suffix`` as one file name in a folder of ours, or BadRequest saying why not.

    Refused, never rewritten (two ids must never map to one file): empty names, path separators,
    ``.``/``..``, control characters, Windows device names and trailing dots/spaces, and names
    longer than :data:`NAME_MAX` bytes once ``suffix`` is added."""
    name = f"{text}{suffix}"
    problem = None
    if not text or text.strip() != text:
        problem = "it is empty or starts/ends with a space"
    elif text in (".", "..") or "/" in text or "\\" in text or (os.altsep and os.altsep in text):
        problem = "it contains a path separator or is '.' or '..'"
    elif any(ord(ch) < 32 or ch in '<>:"|?*' for ch in text):
        problem = 'it contains a control character or one of <>:"|?*'
    elif text.startswith("."):
        problem = "it starts with '.' (hidden file)"
    elif _RESERVED.match(text) or text.endswith("."):
        problem = "it is a reserved device name on Windows or ends with '.'"
    elif len(os.fsencode(name)) > NAME_MAX:
        problem = f"the file name {name[:40]}... would be {len(os.fsencode(name))} bytes (at most {NAME_MAX})"
    if problem:
        raise BadRequest(f"{what} {text[:80]!r} cannot be used as a file name: {problem}; "
                         "use letters, digits, '-', '_' and '.'")
    return name


def contact_sheet_path(out: Path | None, frames_dir: Path | None) -> Path:
    """``animate --preview``'s contact sheet: ``talk.mp4`` -> ``talk_contact.png`` (or next to the PNG
    folder when only that is written); defined here because it is an output the guard checks."""
    if out is not None:
        return out.with_name(out.stem + "_contact.png")
    assert frames_dir is not None
    return frames_dir.with_name(frames_dir.name + "_contact.png")


def animate_outputs(args: object) -> tuple[dict[str, Path | None], dict[str, Path | None]]:
    """(file outputs, frames folders) an ``animate`` run writes, derived ones included."""
    out = getattr(args, "out", None)
    frames_dir = getattr(args, "frames_dir", None)
    files: dict[str, Path | None] = {"--out": Path(out) if out else None}
    if getattr(args, "motion", None) is None and getattr(args, "save_motion", None):
        files["--save-motion"] = Path(getattr(args, "save_motion"))
    if getattr(args, "save_driving", None):
        files["--save-driving"] = Path(getattr(args, "save_driving"))
    if getattr(args, "preview", False) and (out or frames_dir):
        files["the --preview contact sheet"] = contact_sheet_path(Path(out) if out else None,
                                                                  Path(frames_dir) if frames_dir else None)
    return files, {"--frames-dir": Path(frames_dir) if frames_dir else None}


def check_animate_paths(args: object) -> None:
    """``animate``: inputs vs every output (contact sheet, --save-driving included), and the
    derived outputs' names and folders before any work."""
    from engine.fileio import check_output_file

    inputs = {f"--{k.replace('_', '-')}": getattr(args, k, None) for k in ("image", "audio", "motion", "controls")}
    files, folders = animate_outputs(args)
    check_run_paths(inputs, files, folders)
    for opt in ("--save-driving", "the --preview contact sheet"):
        if files.get(opt) is not None:
            try:
                check_output_file(files[opt])  # type: ignore[arg-type]
            except OutputError as exc:
                raise OutputError(f"{opt}: {exc}") from None


def input_problem(path: PathLike) -> str | None:
    """Why ``path`` cannot be read as an input file, in words (None: a readable regular file).

    Why one function: a FIFO (reading it blocks forever), a symlink loop, a broken link, a
    too-long name and a missing file each need their own advice, and every loader (image, audio,
    motion, controls) used to call them all "does not exist" or fail with a traceback."""
    import errno
    import stat

    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (the link points back at itself)"
        if exc.errno == errno.ENAMETOOLONG:
            longest = max((len(os.fsencode(part)) for part in Path(p).parts), default=0)
            return f"has a name too long for the file system ({longest} bytes; at most {NAME_MAX} per name)"
        if exc.errno == errno.ENOTDIR:
            return "does not exist (a part of the path is a file, not a folder)"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "cannot be read (permission denied)"
        if os.path.lexists(p):
            return f"is a broken symbolic link (it points at {os.readlink(p)}, which does not exist)"
        return "does not exist"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(st.st_mode):
        return "is a named pipe (FIFO), not a file; save the data to a regular file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a device or socket)"
    if not os.access(p, os.R_OK):
        return "cannot be read (permission denied)"
    return None
