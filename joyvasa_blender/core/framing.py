"""Face framing settings → engine options, and Image Editor clicks → picture pixels (bpy-free).

Why here: the Frame Face tool, the crop preview and Render Portrait Animation must pass the
engine exactly the same framing (``--crop``, ``--scale``, ``--vx``, ``--vy``,
``--face-index``), and the coordinate conversion is easy to get upside down; both are plain
functions tested without Blender (tests/addon_core/test_framing_core.py).

Coordinates: the engine wants pixels of the picture file, origin at the top-left corner, y
down. Blender's Image Editor gives normalised view coordinates with the origin at the
bottom-left, y up.
"""
from __future__ import annotations

from typing import Any, Sequence

from .contract.schema import FRAMING_SCALE, FRAMING_VX, FRAMING_VY, LIP_NORMALIZE_THRESHOLD

MODES = ("AUTO", "NONE", "BOX", "POINTS")
#: upstream app defaults (the contract's, as engine/framing/geometry.py)
DEFAULT_SCALE, DEFAULT_VX, DEFAULT_VY = FRAMING_SCALE, FRAMING_VX, FRAMING_VY
STEPS = ("image-left eye", "image-right eye", "mouth centre")


def view_to_pixel(u: float, v: float, width: int, height: int) -> tuple[float, float]:
    """Image Editor view coordinates (0..1, origin bottom-left) → picture pixels (origin top-left)."""
    return (u * width, (1.0 - v) * height)


def pixel_to_view(x: float, y: float, width: int, height: int) -> tuple[float, float]:
    return (x / width, 1.0 - y / height)


def exif_orientation(path: str) -> int:
    """EXIF orientation (1-8) of a JPEG file, 1 when absent or not a JPEG.

    Why: the engine reads pictures upright (EXIF applied, like every image viewer) and takes
    points in those pixels; Blender's Image Editor shows the stored pixels, ignoring EXIF, so
    clicks on a phone photo must be turned the same way (:func:`stored_to_upright`).
    """
    import struct

    try:
        with open(path, "rb") as fh:
            data = fh.read(256 * 1024)
    except OSError:
        return 1
    if data[:2] != b"\xff\xd8":
        return 1
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in (0xD9, 0xDA):          # end of image / start of scan: no more metadata
            break
        size = struct.unpack(">H", data[i + 2:i + 4])[0]
        seg = data[i + 4:i + 2 + size]
        if marker == 0xE1 and seg[:6] == b"Exif\x00\x00":
            tiff = seg[6:]
            end = "<" if tiff[:2] == b"II" else ">"
            try:
                ifd = struct.unpack(end + "I", tiff[4:8])[0]
                (count,) = struct.unpack(end + "H", tiff[ifd:ifd + 2])
                for k in range(count):
                    e = ifd + 2 + 12 * k
                    tag, typ = struct.unpack(end + "HH", tiff[e:e + 4])
                    if tag == 0x0112 and typ == 3:
                        value = struct.unpack(end + "H", tiff[e + 8:e + 10])[0]
                        return value if 1 <= value <= 8 else 1
            except struct.error:
                return 1
            return 1
        i += 2 + size
    return 1


def stored_to_upright(x: float, y: float, width: int, height: int, orientation: int) -> tuple[float, float]:
    """A point in the stored pixels (what Blender shows; ``width``×``height`` stored) → the upright
    picture the engine reads (EXIF orientation applied). Pixel-edge coordinates, origin top-left."""
    w, h = float(width), float(height)
    return {1: (x, y), 2: (w - x, y), 3: (w - x, h - y), 4: (x, h - y),
            5: (y, x), 6: (h - y, x), 7: (h - y, w - x), 8: (y, w - x)}.get(orientation, (x, y))


def order_points(points: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """Three clicked points (eyes in any order, then the mouth) → image-left eye, image-right eye, mouth."""
    if len(points) != 3:
        raise ValueError("the Frame Face tool needs exactly three points: two eyes and the mouth")
    a, b, m = (tuple(map(float, p)) for p in points)
    if a[0] > b[0]:
        a, b = b, a
    if (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 < 4.0:
        raise ValueError("the two eye points are on top of each other: click each eye once")
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    if (mid[0] - m[0]) ** 2 + (mid[1] - m[1]) ** 2 < 4.0:
        raise ValueError("the mouth point is on the eyes: click the centre of the mouth")
    return [a, b, m]  # type: ignore[list-item]


def crop_value(mode: str, box: Sequence[float] = (), points: Sequence[float] = ()) -> str:
    """The ``--crop`` value for a framing mode (AUTO, NONE, BOX: X,Y,W,H, POINTS: 6 numbers)."""
    if mode == "AUTO":
        return "auto"
    if mode == "NONE":
        return "none"
    if mode == "BOX":
        x, y, w, h = (float(v) for v in box)
        if w <= 0 or h <= 0:
            raise ValueError("the face box needs a positive width and height (Crop Box W, H)")
        return ",".join(_num(v) for v in (x, y, w, h))
    if mode == "POINTS":
        p = [float(v) for v in points]
        if len(p) != 6 or not any(p):
            raise ValueError("no face points yet: use Frame Face (click both eyes and the mouth) "
                             "or type them in Face Points")
        order_points([p[0:2], p[2:4], p[4:6]])  # validates
        return "points:" + ",".join(_num(v) for v in p)
    raise ValueError(f"unknown framing mode {mode!r}")


def settings_from_crop_value(text: str) -> dict[str, Any]:
    """The engine's ``--crop`` text → the scene's framing settings (batch job files use the CLI form)."""
    v = (text or "auto").strip().lower()
    if v in ("auto", "none"):
        return {"crop_mode": v.upper()}
    try:
        if v.startswith("points:"):
            nums = [float(x) for x in v[len("points:"):].split(",")]
            if len(nums) == 6:
                crop_value("POINTS", points=nums)  # validates
                return {"crop_mode": "POINTS", "face_points": nums}
        else:
            nums = [float(x) for x in v.split(",")]
            if len(nums) == 4:
                crop_value("BOX", box=nums)
                return {"crop_mode": "BOX", "crop_box": nums}
    except ValueError as exc:
        if "could not convert" not in str(exc):
            raise
    raise ValueError(f"crop must be auto, none, X,Y,W,H or points:LX,LY,RX,RY,MX,MY, got {text!r}")


def _num(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def framing_fields(mode: str, *, box: Sequence[float] = (), points: Sequence[float] = (),
                   scale: float = DEFAULT_SCALE, vx: float = DEFAULT_VX, vy: float = DEFAULT_VY,
                   face_index: int = 0) -> dict[str, Any]:
    """The framing fields of a crop/animate job (core/requests.py); values at the engine's
    defaults are left out, so the engine's own defaults apply."""
    fields: dict[str, Any] = {"crop": crop_value(mode, box, points)}
    for key, value, default in (("scale", scale, DEFAULT_SCALE), ("vx", vx, DEFAULT_VX), ("vy", vy, DEFAULT_VY)):
        if abs(value - default) > 1e-6:
            fields[key] = float(f"{value:.4g}")
    if mode == "AUTO" and face_index > 0:
        fields["face_index"] = int(face_index)
    return fields


def framing_args(mode: str, **kw: Any) -> list[str]:
    """The same framing as command-line options (``engine crop --json``, tools/batch.py's check)."""
    args: list[str] = []
    for key, value in framing_fields(mode, **kw).items():
        args += ["--" + key.replace("_", "-"), value if isinstance(value, str) else f"{value:g}"]
    return args



def framing_summary(event: dict[str, Any] | None) -> str:
    """One line for the panel from a ``framing`` event (or ``engine crop --json`` object)."""
    if not event:
        return ""
    method = event.get("method", "?")
    score = event.get("score")
    if method == "xpose":  # upstream's animal framing (X-Pose's 9 face points)
        parts = ["animal face found (X-Pose" + (f", score {score:.2f})" if isinstance(score, (int, float)) else ")")]
    elif method == "fallback":
        parts = ["no animal face found: centred square"
                 + (f" (X-Pose best score {score:.2f})" if isinstance(score, (int, float)) else "")
                 + "; use Frame Face to mark eyes and mouth"]
    else:
        parts = [f"{method}"]
    if event.get("faces"):
        parts.append(f"face {int(event.get('face_index') or 0) + 1} of {event['faces']}")
    angle = event.get("angle_deg")
    if isinstance(angle, (int, float)) and abs(angle) >= 0.5:
        parts.append(f"tilt {angle:+.0f}°")
    lip = event.get("lip_open")
    if isinstance(lip, (int, float)):  # the engine closes lips parted by >= 0.03 (lip normalisation)
        parts.append(f"lips open {lip:.2f}" + (" → closed first" if lip >= LIP_NORMALIZE_THRESHOLD else ""))
    return ", ".join(parts)


def points_from_event(event: dict[str, Any] | None) -> list[float] | None:
    """The three framing points (6 numbers) that reproduce an automatic framing, for editing:
    the two eyes and the mouth centre of the detector's five points (or of X-Pose's nine)."""
    if not event or not event.get("points"):
        return None
    p = event["points"]
    if len(p) == 5:
        m = ((p[3][0] + p[4][0]) / 2, (p[3][1] + p[4][1]) / 2)
        return [p[0][0], p[0][1], p[1][0], p[1][1], m[0], m[1]]
    if len(p) == 3:
        return [v for xy in p for v in xy]
    if len(p) == 9:  # X-Pose: eye corners pairwise (the animal's right eye first), lip corners 5 and 6
        a = ((p[0][0] + p[1][0]) / 2, (p[0][1] + p[1][1]) / 2)
        b = ((p[2][0] + p[3][0]) / 2, (p[2][1] + p[3][1]) / 2)
        m = ((p[5][0] + p[6][0]) / 2, (p[5][1] + p[6][1]) / 2)
        left, right = (a, b) if a[0] <= b[0] else (b, a)
        return [left[0], left[1], right[0], right[1], m[0], m[1]]
    return None


def crop_view_points(event: dict[str, Any] | None) -> list[tuple[float, float]]:
    """The framing's landmarks (X-Pose's 9, the detector's 5, clicked 3) where they fall on the crop
    preview, in the Image Editor's normalised view coordinates (0..1, origin bottom-left): what
    Preview Crop draws over the crop. Points outside the crop are left out."""
    if not event or not event.get("points") or not event.get("M_c2o"):
        return []
    (a, b, c), (d, e, f) = event["M_c2o"]
    det = a * e - b * d
    if abs(det) < 1e-12:
        return []
    size = float(event.get("crop_size") or 512)
    out = []
    for x, y in event["points"]:
        dx, dy = x - c, y - f
        cx, cy = (e * dx - b * dy) / det, (-d * dx + a * dy) / det   # inverse of the crop → picture map
        if 0.0 <= cx <= size and 0.0 <= cy <= size:
            out.append(pixel_to_view(cx, cy, int(size), int(size)))
    return out

