"""Key a motion file onto a small rig with the real extension inside bpy and dump the keys as JSON.

    .venvs/bpy-5.0/bin/python tools/docs_keys_bpy.py --motion motion.npz --out keys.json

Why: the README picture (tools/docs_picture.py) shows the F-curves the add-on actually keys, read
back from Blender, not the motion file's numbers re-plotted. Runs under a bpy wheel's Python (no
torch); the extension is built and installed into a throw-away user folder, as a user would.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
MODULE = "bl_ext.user_default.joyvasa_blender"
SHAPE_KEYS = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "eyeBlinkLeft", "eyeBlinkRight", "mouthPucker",
              "mouthFunnel", "browInnerUp", "browDownLeft", "browDownRight")


def install_extension(bpy) -> None:
    """Build the zip with tools/build_extension.py and install it with Blender's own operator."""
    spec = importlib.util.spec_from_file_location("build_extension", REPO / "tools" / "build_extension.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    zpath = mod.build(Path(tempfile.mkdtemp(prefix="joyvasa_docs_dist_")))
    res = bpy.ops.extensions.package_install_files(filepath=str(zpath), repo="user_default", enable_on_install=True)
    if res != {"FINISHED"}:
        raise SystemExit(f"installing {zpath} failed: {res}")


def build_scene(bpy, fps: int, shape_keys: Sequence[str] = SHAPE_KEYS, frames: tuple[int, int] | None = None):
    """Armature root > neck > head (head pointing up) + a face mesh with ARKit-named shape keys.

    The inside-bpy tests build their scene with this too (tests/blender/inside_bpy/conftest.py),
    so the picture keys the rig the tests check."""
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = fps, 1.0
    if frames is not None:
        scene.frame_start, scene.frame_end = frames
    arm = bpy.data.armatures.new("RigData")
    rig = bpy.data.objects.new("Rig", arm)
    scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    for name, head, tail, parent in (("root", (0, 0, 0), (0, 0, 1.4), None), ("neck", (0, 0, 1.4), (0, 0, 1.55), "root"),
                                     ("head", (0, 0, 1.55), (0, 0, 1.8), "neck")):
        bone = arm.edit_bones.new(name)
        bone.head, bone.tail = head, tail
        if parent:
            bone.parent = arm.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    mesh = bpy.data.meshes.new("FaceData")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    face = bpy.data.objects.new("Face", mesh)
    scene.collection.objects.link(face)
    face.shape_key_add(name="Basis")
    for name in shape_keys:
        face.shape_key_add(name=name)
    scene.joyvasa.rig, scene.joyvasa.mesh = rig, face
    return scene, rig, face


def sample(scene, rig, face) -> dict:
    """The keyed values per frame of the take, evaluated by Blender (head as Euler degrees)."""
    start, end = (int(round(v)) for v in rig.animation_data.action.frame_range)
    head = rig.pose.bones["head"]
    frames, euler, keys = [], [], {n: [] for n in SHAPE_KEYS}
    blocks = face.data.shape_keys.key_blocks
    for f in range(start, end + 1):
        scene.frame_set(f)
        e = head.rotation_quaternion.to_euler("XYZ")
        frames.append(f)
        euler.append([math.degrees(a) for a in e])
        for n in SHAPE_KEYS:
            keys[n].append(blocks[n].value)
    import bpy

    return {"blender": bpy.app.version_string, "fps": scene.render.fps, "frames": frames,
            "head_euler_deg": euler, "shape_keys": keys}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--motion", type=Path, required=True, help="motion .npz to key")
    ap.add_argument("--out", type=Path, required=True, help="JSON file for the sampled keys")
    ap.add_argument("--fps", type=int, default=24, help="scene frame rate (the add-on resamples to it)")
    args = ap.parse_args(argv)
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="joyvasa_docs_bhome_"))
    import bpy  # first: it makes addon_utils importable
    import addon_utils

    install_extension(bpy)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable(MODULE, default_set=True)
    scene, rig, face = build_scene(bpy, args.fps)
    res = bpy.ops.joyvasa.apply_motion(filepath=str(args.motion.resolve()), start_frame=1)
    if res != {"FINISHED"}:
        raise SystemExit(f"apply_motion returned {res}")
    data = sample(scene, rig, face)
    tmp = args.out.with_name(f".joyvasa-part.{args.out.name}")
    tmp.write_text(json.dumps(data))
    tmp.replace(args.out)
    print(f"wrote {args.out}: {len(data['frames'])} frames keyed in Blender {data['blender']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
