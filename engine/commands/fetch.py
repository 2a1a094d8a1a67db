"""``python -m engine fetch --out DIR``: download the official weights, check them, say where they are.

Why a command of the engine: the Blender extension ships the engine but not ``tools/``, and its
Download Weights button runs exactly this (with ``--progress json``). Order of work, each step
able to stop the run before anything is written: reach the host (``HF_ENDPOINT``, within seconds;
``HF_HUB_OFFLINE`` refuses at once), ask it every file's size and hash, show the plan (files,
bytes, licences of the optional parts), check free space, then download into a staging folder
beside DIR (resumable) and place each file once it matches. Finally every file is loaded with
the strict loaders (``doctor``'s checks) and the folder to use is printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import OutputError, WeightsCorrupt, WeightsMissing
from engine.jobs import FetchJob
from engine.runner import Done, Reporter, run_protocol_command

if TYPE_CHECKING:
    from engine.fetch.hub import RemoteFile

#: doctor groups that prove each part loads
PART_GROUPS = {"core": ("liveportrait", "joyvasa"), "animals": ("liveportrait_animals",),
               "detector": ("detector",), "xpose": ("xpose",)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="weights folder to fill (created if needed)")
    p.add_argument("--animals", action="store_true", help="also LivePortrait's animal models (for --animal)")
    p.add_argument("--xpose", action="store_true",
                   help="also the X-Pose animal-face keypoint model (NON-COMMERCIAL licence)")
    p.add_argument("--detector", action="store_true",
                   help="also the InsightFace detector files (NON-COMMERCIAL licence; the default MTCNN needs none)")
    p.add_argument("--plan-only", action="store_true", help="say what would be downloaded (files, size, free space), then stop")
    p.add_argument("--verify-only", action="store_true", help="download nothing; only load-check what DIR holds")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol events on stdout (for the Blender add-on)")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def plan(reporter: Reporter, out: Path, parts: list[Any], host: str) -> dict[str, Any]:
    """Ask the host about every file; what is already in DIR, what must come, licences, free space."""
    import shutil

    from engine.fetch import hub, transfer
    from engine.preflight import _existing_ancestor, check_free_space, require_packages

    files = [f for part in parts for f in part.files]
    try:
        hub.probe(host)
        require_packages(["huggingface_hub"])   # after the probe: the manual route needs no package
        remotes = [(part.name, hub.describe(f, host)) for part in parts for f in part.files]
    except Exception as exc:
        if getattr(exc, "code", "") == "offline":
            raise type(exc)(f"offline: {exc}. {hub.manual_route(files, host)}") from None
        raise
    staging = transfer.staging_dir(out)
    transfer.check_staging(staging)            # before the first byte: the layout we write into
    transfer.check_layout(out, [r.file.dest for _p, r in remotes])
    entries, todo = [], []
    for part_name, remote in remotes:
        final = out / remote.file.dest
        present = transfer.matches(final, remote)
        have = 0 if present else transfer.partial_bytes(staging, remote)
        entries.append({"path": remote.file.dest, "part": part_name, "size": remote.size, "present": present,
                        "replaces": not present and final.exists(), "resume_from": have, "hash": remote.hash_kind})
        if not present:
            todo.append((remote, final, have))
    need = sum(r.size - have for r, _f, have in todo)
    try:
        free = shutil.disk_usage(_existing_ancestor(out)).free
    except OSError:
        free = None
    info = {"dir": str(out), "staging": str(staging), "host": host, "files": entries,
            "download_files": len(todo), "download_bytes": need,
            "total_bytes": sum(r.size for _p, r in remotes), "free_bytes": free,
            "licences": [{"part": p.name, "title": p.title, "licence": p.licence} for p in parts]}
    for p in parts:
        reporter.log(f"{'optional part' if p.optional else 'required'}: {p.title}\n  licence: {p.licence}")
    reporter.log(f"from {host}: {len(todo)} of {len(entries)} files to download, {_mib(need)}"
                 f" (free: {_mib(free) if free is not None else 'unknown'}) into {out}")
    for e in entries:
        state = ("present, matches" if e["present"] else f"resume at {_mib(e['resume_from'])}" if e["resume_from"]
                 else "differs from the host: replaced once the new file is complete" if e["replaces"] else "new")
        reporter.log(f"  {e['path']}  {_mib(e['size'])}  [{state}]")
    reporter.events.emit("plan", **info)
    check_free_space(out, need, f"{len(todo)} weight files ({_mib(need)})")
    info["_todo"] = todo
    return info


def download_all(reporter: Reporter, info: dict[str, Any], host: str) -> int:
    """Every planned file into staging, then into place (one run per folder); returns the bytes downloaded."""
    from engine.fetch import transfer

    todo = info["_todo"]
    staging = Path(info["staging"])
    total = info["download_bytes"]
    if not todo:
        return 0
    with transfer.exclusive(staging, Path(info["dir"])):
        base = _download_each(reporter, todo, staging, total, host)
    transfer.remove_empty_dirs(staging, [r.file.dest for r, _f, _h in todo])
    return base


def _download_each(reporter: Reporter, todo: list[Any], staging: Path, total: int, host: str) -> int:
    from engine.errors import DownloadFailed
    from engine.fetch import hub, transfer

    base = 0
    reporter.stage_begin("download")
    for i, (planned, final, _planned_resume) in enumerate(todo):
        # ask again right before the bytes: the hub's CDN addresses are signed and expire, and an
        # earlier file of a slow download may have taken longer than that
        remote = hub.describe(planned.file, host)
        if (remote.size, remote.etag) != (planned.size, planned.etag):
            raise DownloadFailed(f"{planned.file.dest} changed on {host} during this run; run again")
        part = transfer.partial_path(staging, remote)
        start = transfer.partial_bytes(staging, remote)   # under the lock: what is really there now

        def on_bytes(have: int, remote: RemoteFile = remote, i: int = i, start: int = start) -> None:
            reporter.progress("download", base + have - start, total, "byte", file=remote.file.dest,
                              file_done=have, file_total=remote.size, files_done=i, files_total=len(todo))

        def on_retry(attempt: int, wait: float, why: str, remote: RemoteFile = remote, i: int = i) -> None:
            reporter.log(f"{why}; retrying in {wait:.1f} s (try {attempt} of {transfer.MAX_TRIES})")
            have = transfer.partial_bytes(staging, remote)
            reporter.progress("download", base + have - start, total, "byte", force=True, file=remote.file.dest,
                              file_done=have, file_total=remote.size, files_done=i, files_total=len(todo),
                              retry=attempt, retries=transfer.MAX_TRIES, retry_in_s=wait)

        transfer.download_with_retries(remote, part, host, on_bytes, on_retry, lambda: reporter.cancel.is_set)
        transfer.verify_and_place(remote, part, final)
        base += remote.size - start
        reporter.progress("download", base, total, "byte", force=True, file=remote.file.dest,
                          file_done=remote.size, file_total=remote.size, files_done=i + 1, files_total=len(todo))
        reporter.artifact("weight_file", str(final))
    reporter.stage_end("download")
    return base


def verify(reporter: Reporter, out: Path, parts: list[Any]) -> dict[str, Any]:
    """Load every part with the strict loaders (doctor's checks); a part that does not load is an error."""
    from engine.pipeline.doctor import check_weights

    reporter.log("checking the files with the engine's strict loaders ...")
    report = check_weights(out, load=True)
    if report.get("error"):
        raise WeightsCorrupt(f"cannot check {out}: {report['error']}")
    groups = report["groups"]
    bad, missing = [], []
    for part in parts:
        for name in PART_GROUPS[part.name]:
            g = groups.get(name)
            if g is None or g.get("error") == "files missing":
                missing.append(name)
            elif not g.get("loads"):
                bad.append(f"{name}: {g.get('error')}")
    if missing:
        absent = [f["path"] for f in report["files"].values() if f["required"] and not f["present"]]
        raise WeightsMissing(f"{out} lacks {', '.join(missing)} files ({', '.join(absent) or 'optional part'}); "
                             "run `python -m engine fetch --out DIR` without --verify-only to download them")
    if bad:
        raise WeightsCorrupt(f"the weights in {out} do not load: {'; '.join(bad)}. Files that match the host's "
                             "size and hash but do not load come from another model; re-fetch from the official host")
    for name, g in groups.items():
        reporter.log(f"  {name}: " + (g.get("checked") or f"loads ({g.get('seconds')} s)"))
    return groups


def body(args: FetchJob, reporter: Reporter) -> Done:
    from engine.fetch import hub
    from engine.weights import fetch_parts

    host = hub.endpoint()
    reporter.hello("fetch", device="cpu", dtype="float32", endpoint=host)
    out = Path(args.out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give the weights folder (it is created if needed)")
    parts = fetch_parts(animals=args.animals, xpose=args.xpose, detector=args.detector)
    downloaded = 0
    if not args.verify_only:
        info = plan(reporter, out, parts, host)
        if args.plan_only:
            return Done({}, {"plan": {k: v for k, v in info.items() if not k.startswith("_")}})
        from engine.fileio import ensure_writable_dir

        ensure_writable_dir(out)
        try:
            downloaded = download_all(reporter, info, host)
        except PermissionError as exc:
            raise OutputError(f"cannot write {exc.filename or out}: permission denied; choose a weights folder "
                              "you can write to") from None
    elif not out.is_dir():
        raise WeightsMissing(f"weights folder {out} does not exist; nothing to verify (without --verify-only, "
                             "`python -m engine fetch --out DIR` downloads into it)")
    groups = verify(reporter, out, parts)
    reporter.log(f"weights ready: {out}\n  use it with --weights {out}, JOYVASA_WEIGHTS={out}, or Blender's "
                 "Preferences > Add-ons > JoyVASA Portrait Animator > Weights")
    return Done({"weights_dir": str(out)}, {"downloaded_bytes": downloaded,
                                            "groups": {k: bool(g.get("loads")) for k, g in groups.items()}})


def run(args: argparse.Namespace) -> int:
    from engine.fetch import transfer

    out = Path(args.out).expanduser().absolute()

    def kept() -> None:
        try:
            staging = transfer.staging_dir(out)
            left = not staging.is_symlink() and staging.is_dir() and any(staging.rglob("*.part"))
        except (OSError, ValueError):   # a path too long to stat, or no staging folder at all
            left = False
        if left:
            print(f"partial downloads kept in {staging}: run the same command again to resume "
                  "(nothing incomplete is in the weights folder)", file=sys.stderr, flush=True)

    rc = run_protocol_command("fetch", args.progress, lambda reporter: body(FetchJob.from_args(args), reporter),
                              cleanup=kept)
    if rc == 0 and args.progress != "json" and not args.plan_only:
        print(out)   # the folder to use, alone on stdout, for scripts
    return rc
