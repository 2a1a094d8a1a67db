"""``python -m engine bench framing [IMAGES...]``: detection, framing quality and time per portrait.

For each picture (default: examples/portrait.jpg) and transformed variants of it (rotated
±20°/±35°, mirrored, padded, shrunk to a small face inside a 6000×4000 canvas) it prints:
whether a face was found, the method, where the *reference* landmarks land in the crop (eye
midpoint x, y and eye-midpoint-to-mouth distance as fractions of the crop side: upstream's
window is x ≈ 0.50, y ≈ 0.52–0.56, 0.19–0.22), and the framing time (decode excluded; wall
and CPU seconds, CPU being robust on a shared machine; the decode time of the variant written
as JPEG is printed beside it). The reference landmarks of a
variant are the original picture's detected landmarks carried through the known transform, so
the numbers measure the detector's consistency, not its agreement with itself. For human faces
it also prints ``lip_open`` (the face mesh's source lip-open ratio, engine/framing/face_mesh.py)
and ``mesh_ms``, the face mesh's own share of the framing time (both passes, fastest of
``--repeat``, CPU time).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", help="pictures (default: examples/portrait.jpg); never committed")
    p.add_argument("--animal", action="store_true", help="frame as animals")
    p.add_argument("--repeat", type=int, default=3, help="runs per picture; the fastest is reported")
    p.add_argument("--no-variants", action="store_true", help="only the pictures as given")


def _variants(img: np.ndarray, pts: np.ndarray | None, with_variants: bool):
    """(name, picture, 2x3 original→variant affine)."""
    import cv2

    h, w = img.shape[:2]
    yield "original", img, np.array([[1.0, 0, 0], [0, 1.0, 0]])
    if not with_variants:
        return
    for deg in (-35.0, -20.0, 20.0, 35.0):
        pad = max(h, w) // 4
        big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        c = (big.shape[1] / 2, big.shape[0] / 2)
        R = cv2.getRotationMatrix2D(c, deg, 1.0)
        out = cv2.warpAffine(big, R, (big.shape[1], big.shape[0]), borderMode=cv2.BORDER_CONSTANT,
                             borderValue=(128, 128, 128))
        T = R @ np.array([[1.0, 0, pad], [0, 1.0, pad], [0, 0, 1]])
        yield f"rot{deg:+.0f}", out, T
    yield "mirror", np.ascontiguousarray(img[:, ::-1]), np.array([[-1.0, 0, w - 1], [0, 1.0, 0]])
    pad = max(h, w) // 2
    yield "padded", cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(30, 30, 30)), \
        np.array([[1.0, 0, pad], [0, 1.0, pad]])
    # a small face in a 6000x4000 photo: the picture scaled to 1000 px wide at (3700, 2200)
    s = 1000.0 / w
    canvas = np.full((4000, 6000, 3), 50, np.uint8)
    small = cv2.resize(img, (1000, int(round(h * s))), interpolation=cv2.INTER_AREA)
    canvas[2200:2200 + small.shape[0], 3700:4700] = small[: 4000 - 2200]
    yield "6000x4000", canvas, np.array([[s, 0, 3700.0], [0, s, 2200.0]])


def _measure(M_c2o: np.ndarray, pts: np.ndarray) -> tuple[float, float, float]:
    from engine.framing import geometry as geo

    c = geo.to_crop(M_c2o, pts) / 512.0
    eye = (c[0] + c[1]) / 2
    mouth = (c[3] + c[4]) / 2 if len(c) >= 5 else c[2]
    return float(eye[0]), float(eye[1]), float(np.hypot(*(mouth - eye)))


def run(args: argparse.Namespace) -> int:
    import cv2

    from engine.errors import EngineError
    from engine.framing.frame import FramingOptions, frame_portrait, load_picture

    images = [Path(p) for p in args.images] or [REPO / "examples" / "portrait.jpg"]
    opts = FramingOptions(animal=args.animal)
    frame_portrait(load_picture(images[0]), opts) if not args.animal else None  # load the detector once
    print(f"{'picture':<28} {'variant':<10} {'found':<6} {'method':<9} {'eye_x':>6} {'eye_y':>6} "
          f"{'eye-mouth':>9} {'frame_ms':>9} {'cpu_ms':>7} {'decode_ms':>9} {'lip_open':>8} {'mesh_ms':>7}")
    found = total = in_window = 0
    times: list[float] = []
    cpus: list[float] = []
    mesh_cpus: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in images:
            img = load_picture(path)
            try:
                ref = frame_portrait(img, opts)
                ref_pts = np.array(ref.points) if ref.points is not None else None
            except EngineError:
                ref_pts = None
            for name, pic, A in _variants(img, ref_pts, not args.no_variants):
                f = Path(tmp) / "v.jpg"
                cv2.imwrite(str(f), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
                t0 = time.perf_counter()
                pic = load_picture(f)
                decode = time.perf_counter() - t0
                best, best_cpu, fr, err = 1e9, 1e9, None, ""
                for _ in range(max(1, args.repeat)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    try:
                        fr = frame_portrait(pic, opts)
                    except EngineError as exc:
                        err = exc.code
                    best = min(best, time.perf_counter() - t0)
                    best_cpu = min(best_cpu, time.process_time() - c0)
                total += 1
                times.append(best)
                cpus.append(best_cpu)
                ok = fr is not None and fr.method not in ("fallback",)
                found += ok
                metrics = "     -      -         -"
                if fr is not None and ref_pts is not None:
                    moved = ref_pts @ A[:, :2].T + A[:, 2]
                    if name == "mirror":
                        moved = moved[[1, 0, 2, 4, 3]]
                    ex, ey, em = _measure(fr.M_c2o, moved)
                    in_window += ok and abs(ex - 0.5) <= 0.03 and 0.51 <= ey <= 0.57 and 0.18 <= em <= 0.23
                    metrics = f"{ex:6.3f} {ey:6.3f} {em:9.3f}"
                method = fr.method if fr is not None else err
                lip, mesh_ms = "       -", "      -"
                if fr is not None and fr.lip_open is not None:
                    lip = f"{fr.lip_open:8.3f}"
                if fr is not None and fr.method == "mtcnn":
                    mesh_ms = f"{_mesh_cpu(pic, np.array(fr.points), args.repeat) * 1000:7.1f}"
                    mesh_cpus.append(float(mesh_ms))
                print(f"{path.name[:28]:<28} {name:<10} {str(ok):<6} {method:<9} {metrics} "
                      f"{best * 1000:9.1f} {best_cpu * 1000:7.1f} {decode * 1000:9.1f} {lip} {mesh_ms}", flush=True)
    print(f"found {found}/{total}; landmarks in upstream's window (x 0.47-0.53, y 0.51-0.57, eye-mouth "
          f"0.18-0.23) {in_window}/{total}; framing wall median {np.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms; CPU median {np.median(cpus) * 1000:.0f} ms, max {max(cpus) * 1000:.0f} ms")
    if mesh_cpus:
        print(f"face mesh (lip_open) per face: CPU median {np.median(mesh_cpus):.1f} ms, max {max(mesh_cpus):.1f} ms "
              f"(2 passes, included in the framing times above)")
    return 0


def _mesh_cpu(pic: np.ndarray, five: np.ndarray, repeat: int) -> float:
    """CPU seconds of the face mesh alone on the chosen face (fastest of ``repeat``, one thread as in detect)."""
    from engine.framing import face_mesh
    from engine.framing.detect import _single_thread

    best = 1e9
    with _single_thread():
        for _ in range(max(1, repeat)):
            c0 = time.process_time()
            face_mesh.run(pic, five[0], five[1], (five[3] + five[4]) / 2)
            best = min(best, time.process_time() - c0)
    return best
