"""Headless batches: run a list of JoyVASA jobs on a .blend and save it.

    blender -b scene.blend --python-exit-code 1 -P tools/batch.py -- --jobs jobs.json
    <bpy-venv>/bin/python tools/batch.py --blend scene.blend --jobs jobs.json

jobs.json is a list of jobs (or {"jobs": [...], "defaults": {...}}); each job is a dict:

    name         unique job name (default: job<i>); the log is <log-dir>/<name>.log
    audio        speech audio file (required)        portrait  image file (for "render")
    start_frame  first frame (default 1)             scene     scene name (default: the active one)
    rig, head_bone, mesh, channels ("NONE"|"RIG"|"EMPTY"), empties (bool)
    preset       rig preset: a preset name ("Rigify face", a user preset) or a .json path; without
                 it the .blend's Rig Preset, whose default Auto picks the best match (docs/rigs.md)
    motion       an existing motion .npz: skip generation and apply it
    generate     generate + apply motion (default: true when rig/mesh/channels are given)
    render       render the portrait video and add strips (default false)
    seed, sampler, steps, cfg_scale, smooth, region, head_strength, expression_strength,
    lip_strength, eye_strength, output_dir, crop_scale, crop_vx, crop_vy, face_index
                                                      (scene.joyvasa settings)
    crop         the engine's --crop text: auto | none | X,Y,W,H | points:LX,LY,RX,RY,MX,MY
    any other art-direction control by its property name (smile, blink, blink_rate, gaze_x,
    silence_relax, ...: joyvasa_blender/core/controls.py); like the strengths they reach the
    engine as the controls file, the same way as from the panel

Farm sharding: ``--shard I/N`` runs every N-th job starting at job I (0 <= I < N), so a farm
manager (Flamenco, Deadline, SLURM arrays) splits one job list over N machines, each running the
same command with its own I; together the shards run every job exactly once. Give each shard its
own .blend with ``--save-as 'shot_{shard}.blend'`` (``{shard}`` is replaced by I).

All jobs of a run are served by one warm engine (``python -m engine serve``, see the add-on's
"Keep Engine Warm"), so the networks load once per batch, not once per job.

Relative paths are relative to jobs.json. A job whose ``<name>.done.json`` marker exists with the
same job content is skipped when re-run. The .blend is saved after every successful job
(``--save-as`` to write elsewhere). Exit code: 0 all jobs ok (or skipped), 1 any job failed,
2 bad arguments.

Checks first: before any job runs, every job to run is checked: its scene, its target objects
(rig of type armature, head bone, mesh), its audio (when it generates or renders), its motion file,
and, when it renders, its portrait and the portrait's framing (``engine crop --json``, the same
framing the render uses). One failed check fails the batch before anything is run or saved; each
failed job's log says why, with the engine's own message. A job that fails while running leaves
nothing in the saved scene: the last saved .blend is reopened before the next job. Settings a job
does not give are the panel's values in the .blend as the batch found them (not the previous
job's). Job logs hold the engine's warnings, and on failure the tail of its stderr.
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


def job_preset(base: Path, value: str) -> str:
    """A job's ``preset``: a name as is, a .json path made absolute (relative to jobs.json)."""
    value = str(value).strip()
    return _abs(base, value) if value.lower().endswith(".json") or "/" in value or "\\" in value else value


def wants_motion(job: dict) -> bool:
    return bool(job.get("generate", bool(job.get("rig") or job.get("mesh") or job.get("channels"))))


def job_framing_args(pkg, st, job: dict) -> list[str]:
    """The framing options the job's render will use: the scene's framing, the job's ``crop`` on top
    (the same core.framing code as the panel; ValueError with a user message if incomplete)."""
    fr = sys.modules[pkg.__name__ + ".core.framing"]
    settings = {"crop_mode": st.crop_mode, "crop_box": tuple(st.crop_box), "face_points": tuple(st.face_points)}
    if job.get("crop"):
        settings.update(fr.settings_from_crop_value(str(job["crop"])))
    return fr.framing_args(settings["crop_mode"], box=tuple(settings["crop_box"]),
                           points=tuple(settings["face_points"]), scale=float(job.get("crop_scale", st.crop_scale)),
                           vx=float(job.get("crop_vx", st.crop_vx)), vy=float(job.get("crop_vy", st.crop_vy)),
                           face_index=int(job.get("face_index", st.face_index)))


def frame_portrait(pkg, image: str, framing_args: list[str], animal: bool) -> str | None:
    """None if the engine can frame ``image`` the way the render will, else the engine's message."""
    import subprocess

    setup = sys.modules[pkg.__name__ + ".engine_setup"]
    ec = sys.modules[pkg.__name__ + ".core.engine_client"]
    cfg = setup.engine_config()
    if cfg.error:
        return cfg.error
    args = ["--image", image, *framing_args, "--json"] + (["--animal"] if animal else [])
    argv = ec.engine_argv(cfg.python, "crop", args, weights=cfg.weights, progress=False)
    try:
        cp = subprocess.run(argv, cwd=str(cfg.engine_src), env=cfg.env(), capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"engine crop could not run: {exc}"
    try:
        answer = json.loads(cp.stdout.strip().splitlines()[-1]) if cp.stdout.strip() else {}
    except ValueError:
        answer = {}
    if cp.returncode == 0 and "error" not in answer:
        return None
    if answer.get("error"):
        return f"engine crop [{answer['error']}]: {answer.get('message', '')}"
    tail = [ln for ln in (cp.stderr or "").splitlines() if ln.strip()][-5:]
    return f"engine crop failed (exit {cp.returncode}): " + " | ".join(tail)


def check_job(bpy, pkg, job: dict, base: Path) -> list[str]:
    """Every problem that would make ``job`` fail, found without running it."""
    problems: list[str] = []
    scene = bpy.data.scenes.get(job["scene"]) if job.get("scene") else bpy.context.scene
    if scene is None:
        problems.append(f"scene {job['scene']!r} not found in the .blend")
    for key, kind in (("rig", "ARMATURE"), ("mesh", "MESH")):
        if job.get(key):
            obj = bpy.data.objects.get(job[key])
            if obj is None or obj.type != kind:
                problems.append(f"{key} object {job[key]!r} not found in the .blend (or not a {kind.lower()})")
            elif key == "rig" and job.get("head_bone") and job["head_bone"] not in obj.data.bones:
                problems.append(f"head bone {job['head_bone']!r} not found in rig {job[key]!r}")
    if job.get("preset"):
        retarget = sys.modules[pkg.__name__ + ".core.retarget"]
        rig_presets = sys.modules[pkg.__name__ + ".rig_presets"]
        try:
            retarget.find_preset(job_preset(base, job["preset"]), rig_presets.user_dir())
        except ValueError as exc:
            problems.append(str(exc))
    if job.get("motion"):
        if not os.path.isfile(_abs(base, job["motion"])):
            problems.append(f"motion file not found: {_abs(base, job['motion'])}")
    elif wants_motion(job) or job.get("render"):
        audio = _abs(base, job.get("audio"))
        if not audio or not os.path.isfile(audio):
            problems.append(f"audio file not found: {audio or '(none given)'}")
    if job.get("render"):
        portrait = _abs(base, job.get("portrait"))
        if not portrait or not os.path.isfile(portrait):
            problems.append(f"portrait file not found: {portrait or '(none given)'}")
        elif scene is not None:
            try:
                framing = job_framing_args(pkg, scene.joyvasa, job)
            except ValueError as exc:
                problems.append(f"framing: {exc}")
            else:
                msg = frame_portrait(pkg, portrait, framing, bool(job.get("animal", scene.joyvasa.animal)))
                if msg:
                    problems.append(f"portrait {portrait} cannot be framed: {msg}")
    return problems


def panel_snapshot(bpy) -> dict[str, dict]:
    """The panel's values of every scene as the batch found them: each job starts from these."""
    keys = [p.identifier for p in bpy.types.Scene.bl_rna.properties["joyvasa"].fixed_type.properties
            if p.identifier != "rna_type" and not p.is_readonly and p.type not in {'POINTER', 'COLLECTION'}]
    def plain(v):  # arrays of the scene would go stale when a failed job reopens the .blend
        return v if isinstance(v, (str, int, float, bool)) else tuple(v)

    return {sc.name: {k: plain(getattr(sc.joyvasa, k)) for k in keys} for sc in bpy.data.scenes}


def run_job(bpy, pkg, job: dict, base: Path, log, defaults: dict[str, dict] | None = None) -> bool:
    runtime = sys.modules[pkg.__name__ + ".runtime"]
    scene = bpy.data.scenes.get(job["scene"]) if job.get("scene") else bpy.context.scene
    if scene is None:
        raise ValueError(f"scene {job['scene']} not found")
    if bpy.context.window is not None and bpy.context.window.scene != scene:
        bpy.context.window.scene = scene
    st = scene.joyvasa
    for key, value in (defaults or {}).get(scene.name, {}).items():
        setattr(st, key, value)
    controls = sys.modules[pkg.__name__ + ".core.controls"]
    for key in SETTINGS + tuple(c.prop for c in controls.CONTROLS if c.prop not in SETTINGS):
        if key in job:
            setattr(st, key, _abs(base, job[key]) if key == "output_dir" else job[key])
    if "crop" in job:  # the engine's --crop text (auto|none|X,Y,W,H|points:...) -> the scene's framing
        framing = sys.modules[pkg.__name__ + ".core.framing"]
        for key, value in framing.settings_from_crop_value(str(job["crop"])).items():
            setattr(st, key, value)
    if "animal" in job:
        st.animal = bool(job["animal"])
    st.audio_source, st.audio_path = "FILE", _abs(base, job.get("audio"))
    st.start_frame = int(job.get("start_frame", 1))
    if job.get("portrait"):
        st.portrait_source, st.portrait_path = "FILE", _abs(base, job["portrait"])
    st.rig = bpy.data.objects.get(job["rig"]) if job.get("rig") else None
    st.mesh = bpy.data.objects.get(job["mesh"]) if job.get("mesh") else None
    for key in ("rig", "mesh"):
        if job.get(key) and getattr(st, key) is None:
            raise ValueError(f"{key} object {job[key]!r} not found (or of the wrong type)")
    if "channels" in job:   # otherwise the panel's value (its default: a 'JoyVASA Motion' empty)
        st.channels_target = job["channels"]
    if "preset" in job:
        st.rig_preset, st.use_rig_mapping = job_preset(base, job["preset"] or ""), False
    if "empties" in job:
        st.make_empties = bool(job["empties"])
    ok = True

    def call(op: str) -> bool:
        """Run an engine operator; log its result, the engine's warnings and (failed) its stderr tail."""
        runtime.LAST = None
        try:
            res = getattr(bpy.ops.joyvasa, op)()
        except RuntimeError as exc:   # background mode: an ERROR report raises
            res = {"CANCELLED"}
            log(f"{op}: {str(exc).strip()}")
        last = runtime.LAST
        log(f"{op}: {res}: {last.report_text(20) if last else ''}")
        for w in (last.warnings if last else []):
            log(f"{op}: engine warning: {w}")
        if last is not None and res != {"FINISHED"} and last.state != "failed" and last.stderr_tail:
            log(f"{op}: engine log (last lines):\n" + "\n".join(last.stderr_tail[-20:]))
        return res == {"FINISHED"}

    with bpy.context.temp_override(scene=scene):
        if job.get("motion"):
            res = bpy.ops.joyvasa.apply_motion(filepath=_abs(base, job["motion"]), start_frame=st.start_frame)
            log(f"apply_motion {job['motion']}: {res}")
            ok = ok and res == {"FINISHED"}
        elif wants_motion(job):
            ok = call("generate_motion")
        if ok and job.get("render"):
            st.render_use_motion = bool(st.motion_path) and bool(job.get("render_use_motion", True))
            ok = call("render_portrait")
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
    todo = []
    for job in jobs:
        marker = log_dir / f"{job['name']}.done.json"
        if not args.force and marker.exists() and json.loads(marker.read_text()).get("hash") == job_hash(job):
            skipped.append(job["name"])
            print(f"[batch] {job['name']}: already done, skipped")
        else:
            todo.append(job)
    # checks first: nothing runs (and nothing is saved) unless every job to run can run
    for job in todo:
        print(f"[batch] {job['name']}: checking inputs", flush=True)
        problems = check_job(bpy, pkg, job, base)
        if problems:
            failed.append(job["name"])
            (log_dir / f"{job['name']}.log").write_text(
                "".join(f"{time.strftime('%H:%M:%S')} check failed: {p}\n" for p in problems)
                + "no job was run: fix the inputs and run the batch again\n")
            (log_dir / f"{job['name']}.done.json").unlink(missing_ok=True)
            for p_ in problems:
                print(f"[batch] {job['name']}: check failed: {p_}", flush=True)
    if failed:
        print(f"[batch] checks failed: no job was run, nothing was saved. {len(done)} done, {len(skipped)} skipped, "
              f"{len(failed)} failed: {', '.join(failed)}")
        return 1
    defaults = panel_snapshot(bpy)
    saved = str(args.blend or bpy.data.filepath or "")
    for job in todo:
        name, h = job["name"], job_hash(job)
        marker = log_dir / f"{name}.done.json"
        lines: list[str] = []

        def log(msg: str) -> None:
            line = f"{time.strftime('%H:%M:%S')} {msg}"
            lines.append(line)
            print(f"[batch] {name}: {msg}", flush=True)

        t0 = time.monotonic()
        try:
            ok = run_job(bpy, pkg, job, base, log, defaults)
        except Exception as exc:  # noqa: BLE001 - one bad job must not stop the batch
            ok = False
            log(f"error: {exc}\n{traceback.format_exc()}")
        log(f"{'ok' if ok else 'FAILED'} in {time.monotonic() - t0:.1f}s")
        if ok:
            target = str(args.save_as or args.blend or bpy.data.filepath)
            if target:
                bpy.ops.wm.save_as_mainfile(filepath=target)
                saved = target
            marker.write_text(json.dumps({"hash": h, "finished": time.time()}))
            done.append(name)
        else:
            marker.unlink(missing_ok=True)
            failed.append(name)
            if saved and os.path.isfile(saved):  # drop the failed job's partial take before the next job
                bpy.ops.wm.open_mainfile(filepath=saved)
                log(f"reopened {saved}: nothing of this job is kept")
            else:
                log("WARNING: no saved .blend to return to; this job's partial results stay in memory")
        (log_dir / f"{name}.log").write_text("\n".join(lines) + "\n")
    runtime = sys.modules[pkg.__name__ + ".runtime"]
    if runtime.WORKER is not None:  # one warm engine served every job of this run
        w = runtime.WORKER
        print(f"[batch] engine: {w.requests} request(s), {w.starts} engine start(s) (warm worker)", flush=True)
        runtime.stop_worker()
    print(f"[batch] {len(done)} done, {len(skipped)} skipped, {len(failed)} failed"
          + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
