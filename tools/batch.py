"""Headless batches: run a list of JoyVASA jobs on a .blend and save it.

    blender -b scene.blend --python-exit-code 1 -P tools/batch.py -- --jobs jobs.json
    <bpy-venv>/bin/python tools/batch.py --blend scene.blend --jobs jobs.json

jobs.json is a list of jobs (or {"jobs": [...], "defaults": {...}}); each job is a dict:

    name         unique job name (default: job<i>); the log is <log-dir>/<name>.log
    audio        speech audio file (required)        portrait  image file (for "render")
    start_frame  first frame (default 1)             scene     scene name (default: the active one)
    rig, head_bone, mesh, channels ("NONE"|"RIG"|"EMPTY"), empties (bool)
    motion       an existing motion .npz: skip generation and apply it
    generate     generate + apply motion (default: true when rig/mesh/channels are given)
    render       render the portrait video and add strips (default false)
    seed, sampler, steps, cfg_scale, smooth, region, head_strength, expression_strength,
    lip_strength, eye_strength, output_dir, crop_scale, crop_vx, crop_vy, face_index
                                                      (scene.joyvasa settings)
    crop         the engine's --crop text: auto | none | X,Y,W,H | points:LX,LY,RX,RY,MX,MY

Farm sharding: ``--shard I/N`` runs every N-th job starting at job I (0 <= I < N), so a farm
manager (Flamenco, Deadline, SLURM arrays) splits one job list over N machines, each running the
same command with its own I; together the shards run every job exactly once. Give each shard its
own .blend with ``--save-as 'shot_{shard}.blend'`` (``{shard}`` is replaced by I).

Relative paths are relative to jobs.json. A job whose ``<name>.done.json`` marker exists with the
same job content is skipped when re-run. The .blend is saved after every successful job
(``--save-as`` to write elsewhere). Exit code: 0 all jobs ok (or skipped), 1 any job failed,
2 bad arguments.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("seed", "sampler", "steps", "cfg_scale", "smooth", "region", "head_strength", "expression_strength",
            "lip_strength", "eye_strength", "output_dir", "head_bone", "pose_reference", "axis_mode",
            "crop_scale", "crop_vx", "crop_vy", "face_index")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="batch.py", description="Run JoyVASA jobs headless on a .blend")
    ap.add_argument("--jobs", required=True, type=Path, help="jobs .json file")
    ap.add_argument("--blend", type=Path, help="the .blend to open (bpy-module mode; with blender -b give it before -P)")
    ap.add_argument("--save-as", type=Path, help="save to this .blend instead of overwriting the opened one")
    ap.add_argument("--log-dir", type=Path, help="per-job logs and done markers (default: <jobs>_logs/)")
    ap.add_argument("--engine-python", help="engine interpreter (default: preferences / auto-detect)")
    ap.add_argument("--weights", help="weights folder (default: preferences / $JOYVASA_WEIGHTS)")
    ap.add_argument("--force", action="store_true", help="re-run jobs that are already done")
    ap.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="I/N",
                    help="run only every N-th job starting at job I (0-based), for render farms")
    return ap.parse_args(argv)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"--shard {text}: need N >= 1 and 0 <= I < N")
    return i, n


def shard(jobs: list[dict], index: int, count: int) -> list[dict]:
    """Every ``count``-th job starting at ``index`` (in file order)."""
    return jobs[index::count]


def script_argv() -> list[str]:
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1:]
    return sys.argv[1:]


def load_jobs(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    defaults: dict = {}
    if isinstance(data, dict):
        defaults = data.get("defaults", {})
        data = data.get("jobs", [])
    jobs = []
    for i, job in enumerate(data):
        job = {**defaults, **job}
        job.setdefault("name", f"job{i}")
        jobs.append(job)
    names = [j["name"] for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique")
    return jobs


def job_hash(job: dict) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]


def ensure_addon():
    """The add-on's package (installed extension, enabled add-on, or this checkout)."""
    import addon_utils
    import bpy

    for name, mod in list(sys.modules.items()):
        if name.endswith("joyvasa_blender") and hasattr(bpy.types.Scene, "joyvasa"):
            return mod
    for mod in addon_utils.modules():
        if mod.__name__.endswith("joyvasa_blender"):
            addon_utils.enable(mod.__name__, default_set=True)
            return sys.modules[mod.__name__]
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import joyvasa_blender  # development checkout
    joyvasa_blender.register()
    return joyvasa_blender


def _abs(base: Path, p: str | None) -> str:
    if not p:
        return ""
    return str(p if os.path.isabs(p) else (base / p).resolve())


def run_job(bpy, pkg, job: dict, base: Path, log) -> bool:
    runtime = sys.modules[pkg.__name__ + ".runtime"]
    scene = bpy.data.scenes.get(job["scene"]) if job.get("scene") else bpy.context.scene
    if scene is None:
        raise ValueError(f"scene {job['scene']} not found")
    if bpy.context.window is not None and bpy.context.window.scene != scene:
        bpy.context.window.scene = scene
    st = scene.joyvasa
    for key in SETTINGS:
        if key in job:
            setattr(st, key, _abs(base, job[key]) if key == "output_dir" else job[key])
    if "crop" in job:  # the engine's --crop text (auto|none|X,Y,W,H|points:...) -> the scene's framing
        framing = sys.modules[pkg.__name__ + ".core.framing"]
        for key, value in framing.settings_from_crop_value(str(job["crop"])).items():
            setattr(st, key, value)
    st.audio_source, st.audio_path = "FILE", _abs(base, job.get("audio"))
    st.start_frame = int(job.get("start_frame", 1))
    if job.get("portrait"):
        st.portrait_source, st.portrait_path = "FILE", _abs(base, job["portrait"])
    st.rig = bpy.data.objects.get(job["rig"]) if job.get("rig") else None
    st.mesh = bpy.data.objects.get(job["mesh"]) if job.get("mesh") else None
    for key in ("rig", "mesh"):
        if job.get(key) and getattr(st, key) is None:
            raise ValueError(f"{key} object {job[key]!r} not found (or of the wrong type)")
    st.channels_target = job.get("channels", "EMPTY" if not (job.get("rig") or job.get("mesh")) else "NONE")
    st.make_empties = bool(job.get("empties", False))
    ok = True
    wants_motion = job.get("generate", bool(job.get("rig") or job.get("mesh") or job.get("channels")))
    with bpy.context.temp_override(scene=scene):
        if job.get("motion"):
            res = bpy.ops.joyvasa.apply_motion(filepath=_abs(base, job["motion"]), start_frame=st.start_frame)
            log(f"apply_motion {job['motion']}: {res}")
            ok = ok and res == {"FINISHED"}
        elif wants_motion:
            res = bpy.ops.joyvasa.generate_motion()
            log(f"generate_motion: {res}: {runtime.LAST.report_text(20) if runtime.LAST else ''}")
            ok = ok and res == {"FINISHED"}
        if ok and job.get("render"):
            st.render_use_motion = bool(st.motion_path) and bool(job.get("render_use_motion", True))
            res = bpy.ops.joyvasa.render_portrait()
            log(f"render_portrait: {res}: {runtime.LAST.report_text(20) if runtime.LAST else ''}")
            ok = ok and res == {"FINISHED"}
    if ok:
        log(f"take={st.last_take} motion={st.motion_path} video={st.last_video}")
    return ok


def main() -> int:
    try:
        args = parse_args(script_argv())
    except SystemExit as exc:
        return 2 if exc.code else 0
    import bpy

    if args.blend is not None and Path(bpy.data.filepath or "").resolve() != args.blend.resolve():
        bpy.ops.wm.open_mainfile(filepath=str(args.blend))
    if args.engine_python:
        os.environ["JOYVASA_ENGINE_PYTHON"] = args.engine_python
    if args.weights:
        os.environ["JOYVASA_WEIGHTS"] = args.weights
    try:
        jobs = shard(load_jobs(args.jobs), *args.shard)
    except (OSError, ValueError) as exc:
        print(f"[batch] cannot read {args.jobs}: {exc}", file=sys.stderr)
        return 2
    if args.save_as is not None:
        args.save_as = Path(str(args.save_as).replace("{shard}", str(args.shard[0])))
    if args.shard[1] > 1:
        print(f"[batch] shard {args.shard[0]}/{args.shard[1]}: {len(jobs)} job(s): "
              + ", ".join(j["name"] for j in jobs), flush=True)
    pkg = ensure_addon()
    base = args.jobs.resolve().parent
    log_dir = args.log_dir or base / f"{args.jobs.stem}_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    failed, done, skipped = [], [], []
    for job in jobs:
        name, h = job["name"], job_hash(job)
        marker = log_dir / f"{name}.done.json"
        if not args.force and marker.exists() and json.loads(marker.read_text()).get("hash") == h:
            skipped.append(name)
            print(f"[batch] {name}: already done, skipped")
            continue
        lines: list[str] = []

        def log(msg: str) -> None:
            line = f"{time.strftime('%H:%M:%S')} {msg}"
            lines.append(line)
            print(f"[batch] {name}: {msg}", flush=True)

        t0 = time.monotonic()
        try:
            ok = run_job(bpy, pkg, job, base, log)
        except Exception as exc:  # noqa: BLE001 - one bad job must not stop the batch
            ok = False
            log(f"error: {exc}\n{traceback.format_exc()}")
        log(f"{'ok' if ok else 'FAILED'} in {time.monotonic() - t0:.1f}s")
        (log_dir / f"{name}.log").write_text("\n".join(lines) + "\n")
        if ok:
            target = str(args.save_as or args.blend or bpy.data.filepath)
            if target:
                bpy.ops.wm.save_as_mainfile(filepath=target)
            marker.write_text(json.dumps({"hash": h, "finished": time.time()}))
            done.append(name)
        else:
            marker.unlink(missing_ok=True)
            failed.append(name)
    print(f"[batch] {len(done)} done, {len(skipped)} skipped, {len(failed)} failed"
          + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
