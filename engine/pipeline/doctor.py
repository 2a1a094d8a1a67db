"""Pipeline: is this installation ready to animate? Versions, devices, weights (``engine doctor``;
the CLI's options and exit code are in engine/commands/doctor.py).

Why: most first-run failures are a missing or misplaced weight file, a CPU-only torch on a
GPU machine, or an old PyAV. Doctor checks every expected file by *loading* it with the
engine's strict loaders (the same code ``animate`` uses), reports whether the sizes are the
official ones or a custom ``models.yaml`` set, and says what to do next. Run by the warm worker
as :func:`run_doctor` (the report travels in the ``done`` event).
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from engine import __version__
from engine.jobs import DoctorJob
from engine.pipeline.context import Context
from engine.runner import Done

if TYPE_CHECKING:
    from engine.weights import WeightsLayout, _AnimalLayout

REQUIRED_NOTE = "required"


def _version(module: str, attr: str = "__version__") -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - report, never crash
        return None
    return str(getattr(mod, attr, "unknown"))


def versions() -> dict[str, Any]:
    return {"engine": __version__, "python": platform.python_version(), "torch": _version("torch"),
            "transformers": _version("transformers"), "av": _version("av"), "cv2": _version("cv2"),
            "numpy": _version("numpy"), "scipy": _version("scipy"), "librosa": _version("librosa")}


def devices() -> dict[str, Any]:
    from engine.device import (available_devices, cpu_has_native_bf16, describe_device, select_device,
                               select_motion_precision, select_precision)
    from engine.contract.protocol import DEFAULT_SAMPLER

    dev = select_device("auto")
    info: dict[str, Any] = {"available": available_devices(), "auto": describe_device(dev),
                            "auto_dtype": select_precision(dev, "auto").name,
                            "auto_motion_dtype": select_motion_precision(dev, "auto", DEFAULT_SAMPLER).name,
                            "cpu_native_bf16": cpu_has_native_bf16()}
    from engine.accelerator import device_in_use

    in_use = device_in_use(dev)
    info.update(in_use=in_use.line, gpu_warning=in_use.warning)
    try:
        from engine.render.writers import nvenc_status, pick_video_codec
        usable, reason = nvenc_status()   # --codec auto uses h264_nvenc only where this says usable
        info["nvenc"] = {"usable": usable, "reason": reason}
        info["video_codec"] = pick_video_codec()
    except Exception as exc:  # noqa: BLE001
        info["video_codec"] = None
        info["video_codec_error"] = str(exc)
    return info


def _file(path: Path, required: bool = True) -> dict[str, Any]:
    ok = path.is_file()
    return {"path": str(path), "present": ok, "required": required,
            "size_mb": round(path.stat().st_size / 2**20, 1) if ok else None}


def check_weights(root: Path | None, load: bool = True) -> dict[str, Any]:
    """Per-file presence, then whole-group loading with the engine's strict loaders."""
    from engine.weights import WeightsLayout, synthetic_info

    report: dict[str, Any] = {"root": str(root) if root else None, "files": {}, "groups": {}}
    if root is None or not root.is_dir():
        report["error"] = "no weights folder" if root is None else f"{root} does not exist"
        return report
    layout = WeightsLayout(root)
    report["synthetic"] = synthetic_info(root)
    files = {k: _file(v) for k, v in layout.liveportrait_files().items()}
    files["motion_generator"] = _file(layout.motion_generator)
    files["motion_template"] = _file(layout.motion_template)
    files["audio_encoder_config"] = _file(layout.audio_encoder_dir() / "config.json")
    files["models_yaml"] = _file(layout.models_yaml, required=False)
    files["face_detector_onnx"] = _file(root / "insightface/models/buffalo_l/det_10g.onnx", required=False)
    report["files"] = files
    if not load:
        return report

    lp_ok = all(files[k]["present"] for k in layout.liveportrait_files())
    group: dict[str, Any] = {"loads": False}
    if lp_ok:
        t0 = time.perf_counter()
        try:
            from engine.models.config import LivePortraitConfig
            from engine.models.stage_one import StageOne

            cfg = LivePortraitConfig.for_weights(layout.models_yaml)
            StageOne.load(layout, "cpu", config=cfg)
            group.update(loads=True, seconds=round(time.perf_counter() - t0, 2),
                         size="official size" if cfg == LivePortraitConfig.official() else "custom (models.yaml)")
        except Exception as exc:  # noqa: BLE001 - report every failure as text
            group["error"] = f"{type(exc).__name__}: {exc}"
    else:
        group["error"] = "files missing"
    report["groups"]["liveportrait"] = group

    mg_ok = all(files[k]["present"] for k in ("motion_generator", "motion_template", "audio_encoder_config"))
    group = {"loads": False}
    if mg_ok:
        t0 = time.perf_counter()
        try:
            from engine.motion.generate import MotionModel

            model = MotionModel.load(layout, "cpu")
            c = model.config
            official = (c.motion_feat_dim, c.n_motions, c.n_prev_motions, c.feature_dim, c.audio_hidden) in (
                (73, 100, 10, 256, 768), (70, 100, 25, 256, 768))
            group.update(loads=True, seconds=round(time.perf_counter() - t0, 2),
                         size="official size" if official else "custom",
                         config={"motion_feat_dim": c.motion_feat_dim, "n_motions": c.n_motions,
                                 "n_prev_motions": c.n_prev_motions, "feature_dim": c.feature_dim,
                                 "n_diff_steps": c.n_diff_steps, "audio_model": c.audio_model})
        except Exception as exc:  # noqa: BLE001
            group["error"] = f"{type(exc).__name__}: {exc}"
    else:
        group["error"] = "files missing"
    report["groups"]["joyvasa"] = group
    report["groups"].update(check_optional_parts(layout, files))
    return report


def _load_group(load: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    """Run one group's strict load; the answer doctor reports (loads, seconds, error)."""
    t0 = time.perf_counter()
    try:
        extra = load() or {}
    except Exception as exc:  # noqa: BLE001 - report every failure as text
        return {"loads": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"loads": True, "seconds": round(time.perf_counter() - t0, 2), **extra}


def check_optional_parts(layout: WeightsLayout, files: dict[str, Any]) -> dict[str, Any]:
    """Optional parts (``engine fetch --animals/--xpose/--detector``) are load-checked when present:
    a present but broken file is as much a problem as a broken required one."""
    from engine.weights import ANIMAL_MODEL_DIRS, FETCH_PARTS, animal_layout

    root = layout.root
    groups: dict[str, Any] = {}
    for version, folder in ANIMAL_MODEL_DIRS.items():   # v1 (base_models) and v1.1 (base_models_v1.1)
        if not (root / folder).is_dir():
            continue
        animals = animal_layout(layout, version)
        suffix = "" if version == "v1" else f"_{version}"
        paths = {k: v for k, v in animals.liveportrait_files().items() if k != "stitching_retargeting_module"}
        for name, path in paths.items():
            files[f"animal{suffix}_{name}"] = _file(path, required=False)

        def load_animals(animals: _AnimalLayout = animals, paths: dict[str, Path] = paths) -> None:
            from engine.models.config import LivePortraitConfig
            from engine.models.stage_one import StageOne

            missing = [str(p) for p in paths.values() if not p.is_file()]
            if missing:
                raise FileNotFoundError("missing " + ", ".join(missing))
            StageOne.load(animals, "cpu", config=LivePortraitConfig.for_weights(layout.models_yaml))
        groups[f"liveportrait_animals{suffix}"] = _load_group(load_animals)
    onnx = [root / f.dest for f in FETCH_PARTS["detector"].files]
    if any(p.is_file() for p in onnx):
        def load_detector() -> None:
            import cv2

            for path in onnx:
                if path.is_file():
                    cv2.dnn.readNetFromONNX(str(path))
        groups["detector"] = _load_group(load_detector)
    xpose = root / FETCH_PARTS["xpose"].files[0].dest
    if xpose.is_file():
        files["xpose"] = _file(xpose, required=False)
        loader = xpose_loader()
        groups["xpose"] = (_load_group(lambda: loader(xpose) and None) if loader is not None else
                           {"loads": True, "checked": "present; no X-Pose loader in this engine yet (fetch checks "
                                                      "its size and hash)"})
        groups["xpose"]["licence"] = FETCH_PARTS["xpose"].licence  # optional, non-commercial: always say so
    return groups


def xpose_loader() -> Callable[[Path], Any] | None:
    """The engine's strict X-Pose checkpoint loader, once the engine has one (None before)."""
    import importlib

    try:
        xpose = importlib.import_module("engine.framing.xpose")
    except ImportError:
        return None
    read, build = getattr(xpose, "read_state_dict", None), getattr(xpose, "build_from_state_dict", None)
    if read is not None and build is not None:   # uncached: a warm worker's doctor must not keep 270 MB
        return lambda path: build(read(path), path)
    return getattr(xpose, "load_model", None)


def next_steps(report: dict[str, Any]) -> list[str]:
    from engine.errors import OFFICIAL_WEIGHTS_HINT
    from engine.weights import SYNTHETIC_NOTE

    steps: list[str] = []
    w = report["weights"]
    if w.get("error"):
        steps.append(f"Weights: {w['error']}. Pass --weights DIR or set $JOYVASA_WEIGHTS. {OFFICIAL_WEIGHTS_HINT}")
        return steps
    missing = [k for k, f in w["files"].items() if f["required"] and not f["present"]]
    if missing:
        steps.append(f"Missing weight files: {', '.join(missing)}. {OFFICIAL_WEIGHTS_HINT}")
    for name, g in w.get("groups", {}).items():
        if g.get("error") and g["error"] != "files missing":
            steps.append(f"{name} weights do not load ({g['error']}); re-download them "
                         "(python -m engine fetch --out DIR, or Download Weights in the add-on's preferences)")
    if not report["devices"].get("video_codec"):
        steps.append("PyAV has no H.264/MPEG-4 encoder: `pip install -U av`, or write PNG sequences (--frames-dir)")
    if not steps:
        steps.append("Ready: python -m engine animate --image portrait.jpg --audio speech.wav --out out.mp4")
    if w.get("synthetic"):
        steps.append(f"{SYNTHETIC_NOTE}: this folder was written by a synthetic-weight writer "
                     f"(tools/make_synthetic_weights.py); videos made with it show noise. {OFFICIAL_WEIGHTS_HINT}")
    return steps


def build_report(weights_arg: str | None, load: bool = True) -> dict[str, Any]:
    import os

    from engine.weights import ENV_VAR

    raw = weights_arg or os.environ.get(ENV_VAR, "")
    root = Path(raw).expanduser() if raw else None
    report: dict[str, Any] = {"versions": versions(), "devices": devices(), "weights": check_weights(root, load)}
    from engine.live.sources import microphones_report   # live sessions (--mic): informative, not in "ok"

    report["microphones"] = microphones_report()
    w = report["weights"]
    required_ok = not w.get("error") and all(f["present"] for f in w["files"].values() if f["required"])
    if load and required_ok:
        required_ok = all(g.get("loads") for g in w["groups"].values())
    report["ok"] = bool(required_ok and report["devices"].get("video_codec"))
    # ready to run, but not a model: every consumer (Check Engine, the demo) reads this one flag
    report["synthetic"] = bool(w.get("synthetic"))
    report["next"] = next_steps(report)
    if report["devices"].get("gpu_warning"):   # whatever else is missing: a GPU machine running at CPU speed
        report["next"].append(report["devices"]["in_use"])
    return report


def print_text(report: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    v = report["versions"]
    print("versions: " + ", ".join(f"{k} {val or 'MISSING'}" for k, val in v.items()), file=out)
    d = report["devices"]
    print(f"devices: {', '.join(d['available'])}; auto -> {d['auto']} (rendering {d['auto_dtype']}, motion "
          f"{d.get('auto_motion_dtype', '?')}; CPU bf16 instructions: {'yes' if d.get('cpu_native_bf16') else 'no'}); "
          f"video codec: {d.get('video_codec') or 'NONE'}", file=out)
    if d.get("in_use"):
        print(f"device: {d['in_use']}", file=out)
    if d.get("nvenc"):
        print(f"hardware H.264 (h264_nvenc): {'yes' if d['nvenc']['usable'] else 'no'} ({d['nvenc']['reason']})",
              file=out)
    w = report["weights"]
    print(f"weights: {w['root'] or '(none)'}" + ("   [SYNTHETIC: random numbers, not a face]" if report.get("synthetic")
                                                  else ""), file=out)
    for name, f in w.get("files", {}).items():
        state = "ok" if f["present"] else ("MISSING" if f["required"] else "absent (optional)")
        size = f" {f['size_mb']} MB" if f["size_mb"] is not None else ""
        print(f"  {name:30s} {state}{size}  {f['path']}", file=out)
    for name, g in w.get("groups", {}).items():
        if g.get("checked"):
            print(f"  {name}: {g['checked']}", file=out)
        elif g.get("loads"):
            print(f"  {name}: loads ({g.get('size') or 'strict load'}, {g.get('seconds')} s)", file=out)
        else:
            print(f"  {name}: does NOT load: {g.get('error')}", file=out)
        if g.get("licence"):
            print(f"  {name} licence: {g['licence']}", file=out)
    mics = report.get("microphones") or {}
    if mics.get("error"):
        print(f"microphones (engine live --mic): none usable: {mics['message']}", file=out)
    else:
        print("microphones (engine live --mic): " + (", ".join(
            f"{m['index']}: {m['name']}{' (default)' if m['default'] else ''}" for m in mics.get("devices", []))
            or "no input device found"), file=out)
    status = "OK" if report["ok"] else "NOT READY"
    if report.get("synthetic"):
        from engine.weights import SYNTHETIC_NOTE
        status += f" ({SYNTHETIC_NOTE})"
    print("status: " + status, file=out)
    for step in report["next"]:
        print(f"next: {step}", file=out)


def run_doctor(job: DoctorJob, ctx: Context) -> Done:
    """For the ``serve`` worker: the report travels in the ``done`` event (``report``, ``ok``)."""
    ctx.reporter.hello("doctor", device="cpu", dtype="float32")
    report = build_report(job.weights, load=not job.no_load)
    return Done({}, {"report": report, "ok": bool(report["ok"])})
