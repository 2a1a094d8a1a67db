"""Scene settings (``scene.joyvasa``): inputs, generation options, targets, art-direction controls.

The controls (core/controls.py CONTROLS: Head, Expression, Eyes & Blinks, Silence, Gaze) are
ordinary animatable properties: key them like any property (hover + I). Before Generate,
Apply, Render and Re-apply Controls the add-on samples each one's F-curve at every frame and
hands the engine a controls file; the engine edits the motion once, so the rig keys and the
rendered video show the same curve. Changing a control later: Re-apply Controls (a new take).
"""

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty,
                       PointerProperty, StringProperty)

from .core import controls as cc
from .core.contract import semantic

SAMPLERS = [("ancestral", "Ancestral (exact)", "Upstream DDPM ancestral sampling: slowest, reference quality"),
            ("ddim", "DDIM", "Deterministic DDIM: fast with few steps"),
            ("dpmpp_2m", "DPM-Solver++ 2M", "Second-order solver: good quality with 10-20 steps")]
REGIONS = [("all", "All", "Head pose and expression"), ("exp", "Expression", "Expression only"),
           ("pose", "Pose", "Head pose only"), ("lip", "Lips", "Lips only"), ("eyes", "Eyes", "Eyes only")]
FRAMING_MODES = [("AUTO", "Automatic", "Detect the face (the largest; Face picks another)"),
                 ("POINTS", "Face Points", "Two eyes and the mouth: click them with Frame Face, or type them"),
                 ("BOX", "Face Box", "An upright face box X, Y, W, H in pixels"),
                 ("NONE", "Whole Picture", "No crop: the whole picture squeezed to 512x512")]
AXES = [(a, a, f"Local {a} axis") for a in ("X", "Y", "Z", "-X", "-Y", "-Z")]


def _is_armature(_self, obj) -> bool:
    return obj.type == 'ARMATURE'


def _is_mesh(_self, obj) -> bool:
    return obj.type == 'MESH'


ROW_KINDS = [("shape_key", "Shape Key", "A shape key of the face mesh (value = clamp(gain x channel + offset))"),
             ("bone_rotation", "Bone Rotation", "A bone's local rotation about one axis: rest + full x value (radians)"),
             ("bone_location", "Bone Location", "A bone's local location along one axis: rest + full x value (rig units)"),
             ("property", "Property", "A custom property of the rig (or of a pose bone): rest + full x value"),
             ("vrm_expression", "VRM Expression", "A VRM 1.0 preset expression of the VRM add-on's avatar (its "
              "preview value; the matching blend-shape group on VRM 0.x): clamp(gain x channel + offset)")]


class JOYVASA_PG_mapping_row(bpy.types.PropertyGroup):
    """One row of the Rig Mapping table: a readout channel -> one target (core/retarget.py rows)."""
    channel: StringProperty(name="Channel", description="Readout channel (jawOpen, viseme_aa, gazeX, ...)")
    kind: EnumProperty(name="Kind", items=ROW_KINDS, default="shape_key")
    target: StringProperty(name="Target", description="Shape key, bone or property name")
    bone: StringProperty(name="Bone", description="Pose bone holding the property (empty: the rig object)")
    axis: EnumProperty(name="Axis", items=[(a, a, f"Local {a}") for a in "XYZ"], default="X")
    full: FloatProperty(name="Full", default=1.0, description="Value at full scale (bones and properties)")
    rest: FloatProperty(name="Rest", default=0.0, description="Value at rest (bones and properties)")
    gain: FloatProperty(name="Gain", default=1.0, soft_min=0.0, soft_max=3.0)
    offset: FloatProperty(name="Offset", default=0.0, soft_min=-1.0, soft_max=1.0)
    lo: FloatProperty(name="Clamp Low", default=0.0)
    hi: FloatProperty(name="Clamp High", default=1.0)
    space: EnumProperty(name="Space", default="LOCAL", items=[
        ("LOCAL", "Local", "The bone's own location channel"),
        ("HEAD", "Head", "An axis of the head bone's rest frame (X left, Y up), converted on the rig")],
        description="Bone rotation or location: which axes the value turns about or moves along")
    aim: StringProperty(name="Aim From", default="",
                        description="Eye bones (comma separated) this eye target sits in front of: Full is then the "
                                    "eyes' angle in radians, the distance is measured on the rig (head space)")


class JOYVASA_PG_settings(bpy.types.PropertyGroup):
    # -- inputs ---------------------------------------------------------------------------
    portrait_source: EnumProperty(name="Portrait", items=[("FILE", "File", "An image file on disk"),
                                                          ("IMAGE", "Image", "An image datablock (packed or generated is fine)")])
    portrait_path: StringProperty(name="Portrait File", subtype='FILE_PATH')
    portrait_image: PointerProperty(name="Portrait Image", type=bpy.types.Image)
    animal: BoolProperty(name="Animal", default=False,
                         description="The portrait is an animal (cat, dog): LivePortrait's animal pipeline "
                                     "(weights from liveportrait_animals/ when present); passed as --animal")
    audio_source: EnumProperty(name="Audio", items=[("FILE", "File", "A speech audio file (wav, flac, mp3)"),
                                                    ("STRIP", "Sound Strip", "A sound strip of the Sequencer; its start frame becomes the start frame")])
    audio_path: StringProperty(name="Audio File", subtype='FILE_PATH')
    audio_strip: StringProperty(name="Sound Strip", description="Name of a sound strip in the Sequencer")
    start_frame: IntProperty(name="Start Frame", default=1, description="Scene frame of the first motion frame (a sound strip overrides it)")
    output_dir: StringProperty(name="Output Folder", subtype='DIR_PATH', default="",
                               description="Where motion files and videos of this scene go (empty: the preferences' "
                                           "folder, //joyvasa/ = next to the .blend; an unsaved file uses the "
                                           "preferences' folder for unsaved files, ~/JoyVASA by default)")
    # -- generation -----------------------------------------------------------------------
    seed: IntProperty(name="Seed", default=0, min=0)
    sampler: EnumProperty(name="Sampler", items=SAMPLERS, default="ddim")
    steps: IntProperty(name="Steps", default=0, min=0, max=1000,
                       description="Denoising steps per window (0: the sampler's default: all for ancestral, 20 DDIM, 10 DPM-Solver++)")
    cfg_scale: FloatProperty(name="CFG Scale", default=2.0, min=0.0, max=10.0)
    smooth: BoolProperty(name="Smoothing", default=True, description="EMA smoothing of pose, scale and translation")
    region: EnumProperty(name="Region", items=REGIONS, default="all", description="Which part of the motion drives the rendered portrait")
    # -- art-direction controls: generated from core/controls.py CONTROLS below --------------
    # -- targets --------------------------------------------------------------------------
    rig: PointerProperty(name="Rig", type=bpy.types.Object, poll=_is_armature)
    rig_preset: StringProperty(name="Rig Preset", default="",
                               description="Retarget preset: a shipped or user preset by name, or the path of a "
                                           "preset .json file; empty = Auto (the preset whose names match the rig "
                                           "and face mesh best)")
    rig_mapping: CollectionProperty(type=JOYVASA_PG_mapping_row, name="Rig Mapping")
    rig_mapping_index: IntProperty(name="Row", default=0, min=0)
    rig_mapping_from: StringProperty(name="Mapping Of", description="The preset the mapping table was loaded from")
    use_rig_mapping: BoolProperty(name="Use Edited Mapping", default=False,
                                  description="Key with the mapping table below instead of the preset file "
                                              "(save it as a user preset to keep it for other scenes)")
    head_bone: StringProperty(name="Head Bone", description="Bone that receives the head rotation (empty: the rig preset's head bone, else "
                                                          "the first bone named like head)")
    apply_head: BoolProperty(name="Head Rotation", default=True)
    head_location: BoolProperty(name="Head Location", default=False, description="Also key the bone location from the motion's translation")
    location_scale: FloatProperty(name="Location Scale", default=0.1, min=0.0, soft_max=1.0,
                                  description="Metres per keypoint unit of translation")
    pose_reference: EnumProperty(name="Neutral Pose", default="FIRST", items=[
        ("FIRST", "First Frame", "Rotation relative to the first frame (JoyVASA's own relative driving)"),
        ("MEAN", "Mean", "Rotation relative to the clip's mean pose"),
        ("ABSOLUTE", "Absolute", "The model's absolute head pose")])
    axis_mode: EnumProperty(name="Axes", default="AUTO", items=[
        ("AUTO", "From Rest Pose", "Convert the camera-frame rotation into the bone's local space via its rest matrix (character facing -Y)"),
        ("MANUAL", "Manual", "Map pitch, yaw and roll directly onto chosen local axes")])
    pitch_axis: EnumProperty(name="Pitch", items=AXES, default="X")
    yaw_axis: EnumProperty(name="Yaw", items=AXES, default="Z")
    roll_axis: EnumProperty(name="Roll", items=AXES, default="Y")
    channels_target: EnumProperty(name="Channels", default="EMPTY", items=[
        ("NONE", "None", "Do not write channel properties"),
        ("RIG", "Rig", "Custom properties on the rig object"),
        ("EMPTY", "Empty", "Custom properties on a 'JoyVASA Motion' empty")])
    mesh: PointerProperty(name="Face Mesh", type=bpy.types.Object, poll=_is_mesh)
    apply_shape_keys: BoolProperty(name="Shape Keys", default=True)
    name_map: StringProperty(name="Name Map", default=semantic.default_name_map(),
                             description="The ARKit 52 preset's shape-key table: channel=ShapeKey1,ShapeKey2*gain; ... "
                                         "(ARKit-52 names by default)")
    reference_mode: EnumProperty(name="Neutral", default="auto", items=[
        ("auto", "Auto", "Lip rows from LivePortrait's closed-lip reference, other rows from the clip median"),
        ("median", "Median", "Clip median"), ("first", "First Frame", "Frame 0"),
        ("lip_array", "Closed Lips", "LivePortrait's closed-lip reference for all rows")])
    include_gaze: BoolProperty(name="Gaze", default=False, description="Also project gaze (eyeLook*) channels")
    mirrored_source: BoolProperty(name="Mirrored Portrait", default=False, description="Swap left/right eye channels (selfie images)")
    make_empties: BoolProperty(name="Keypoint Empties", default=False, description="21 empties following the generated 3-D keypoints")
    # -- render ---------------------------------------------------------------------------
    # -- framing (engine --crop/--scale/--vx/--vy/--face-index; see core/framing.py) --------
    crop_mode: EnumProperty(name="Framing", default="AUTO", items=FRAMING_MODES,
                            description="How the engine finds the face it animates")
    face_points: FloatVectorProperty(name="Face Points", size=6, precision=1,
                                     description="Image-left eye X, Y, image-right eye X, Y, mouth centre X, Y "
                                                 "in pixels of the picture (origin top-left); set by Frame Face")
    crop_box: FloatVectorProperty(name="Face Box", size=4, precision=0, min=0.0,
                                  description="Upright face box X, Y, width, height in pixels of the picture (origin top-left)")
    crop_scale: FloatProperty(name="Crop Scale", default=2.3, min=0.5, max=6.0,
                              description="Crop side / face size (upstream 2.3; larger shows more shoulders)")
    crop_vx: FloatProperty(name="Shift X", default=0.0, min=-1.0, max=1.0,
                           description="Move the crop sideways by this fraction of its side")
    crop_vy: FloatProperty(name="Shift Y", default=-0.125, min=-1.0, max=1.0,
                           description="Move the crop along the face (upstream -0.125: more forehead)")
    face_index: IntProperty(name="Face", default=0, min=0,
                            description="With several faces: 0 = the largest, 1 = the next largest, ...")
    crop_preview: StringProperty(name="Crop Preview", subtype='FILE_PATH',
                                 description="The last crop preview written by the engine")
    crop_summary: StringProperty(name="Framing", description="How the last preview was framed")
    normalize_lip: BoolProperty(name="Close Open Lips", default=True,
                                description="A portrait photographed with parted lips starts from a closed mouth "
                                            "(upstream's lip normalisation, when the framing measured a lip-open "
                                            "ratio of at least 0.03); off passes --no-normalize-lip")
    render_use_motion: BoolProperty(name="Use Generated Motion", default=True,
                                    description="Render with the last generated motion file, so the video matches the keyed take")
    add_strips: BoolProperty(name="Add Strips", default=True,
                             description="Add the video and the audio to the sequencer scene (never to this 3D scene's "
                                         "own Sequencer, so F12 keeps rendering the 3D scene)")
    sequencer_scene: PointerProperty(name="Sequencer Scene", type=bpy.types.Scene,
                                     description="Scene that receives the rendered strips (empty: Blender 5.0's workspace "
                                                 "sequencer scene, else a scene the add-on creates: '<scene> JoyVASA Edit')")
    # -- results --------------------------------------------------------------------------
    motion_path: StringProperty(name="Motion File", subtype='FILE_PATH', description="Last generated (or chosen) motion .npz")
    last_take: StringProperty(name="Last Take")
    last_video: StringProperty(name="Last Video", subtype='FILE_PATH')
    last_preview: StringProperty(name="Last Preview", subtype='FILE_PATH', description="Contact sheet of the last preview")


def _control_property(c: cc.Control):  # type: ignore[no-untyped-def]
    """One bpy property per control (animatable: the add-on samples its F-curve)."""
    desc = c.description + ("" if c.track else " (read at the start frame)")
    if c.kind == "bool":
        return BoolProperty(name=c.label, default=bool(c.default), description=desc)
    if c.kind == "int":
        return IntProperty(name=c.label, default=int(c.default), min=int(c.lo), max=int(c.hi), description=desc)
    return FloatProperty(name=c.label, default=float(c.default), min=c.lo, max=c.hi,
                         soft_min=max(c.lo, -c.soft_hi), soft_max=c.soft_hi, description=desc)


for _c in cc.CONTROLS:
    JOYVASA_PG_settings.__annotations__[_c.prop] = _control_property(_c)

CLASSES = (JOYVASA_PG_mapping_row, JOYVASA_PG_settings)


def register_props() -> None:
    bpy.types.Scene.joyvasa = PointerProperty(type=JOYVASA_PG_settings)


def unregister_props() -> None:
    if hasattr(bpy.types.Scene, "joyvasa"):
        del bpy.types.Scene.joyvasa
