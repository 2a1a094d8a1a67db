"""See and fix the face framing before a long render: Preview Crop (engine ``crop``) and the
Frame Face tool (click both eyes and the mouth on the portrait in the Image Editor).

Points are stored with the scene (``scene.joyvasa.face_points``, picture pixels, origin top-left)
and reach ``engine animate`` as ``--crop points:...`` through core/framing.py, the same function
that builds the preview's options, so the preview is the crop that gets animated.
"""

import json
import os

import bpy
from bpy.props import FloatVectorProperty

from . import apply_media
from .core import framing, requests
from .ops_engine_run import EngineRunMixin

PREVIEW_IMAGE = "JoyVASA Crop Preview"


def portrait_datablock(context) -> bpy.types.Image:
    """The portrait as an image datablock (a portrait file is loaded once, shared)."""
    st = context.scene.joyvasa
    if st.portrait_source == "IMAGE":
        if st.portrait_image is None:
            raise ValueError("no portrait image chosen")
        return st.portrait_image
    path = bpy.path.abspath(st.portrait_path)
    if not st.portrait_path or not os.path.isfile(path):
        raise ValueError(f"portrait file not found: {st.portrait_path or '(none)'}")
    return bpy.data.images.load(path, check_existing=True)


def store_points(st, view_points, width: int, height: int, orientation: int = 1) -> list[tuple[float, float]]:
    """Three Image Editor points (normalised view coordinates) → scene face points in pixels of the
    upright picture (``orientation``: the file's EXIF orientation, which Blender does not apply)."""
    px = [framing.stored_to_upright(*framing.view_to_pixel(u, v, width, height), width, height, orientation)
          for u, v in view_points]
    pts = framing.order_points(px)
    st.face_points = [c for p in pts for c in p]
    st.crop_mode = "POINTS"
    return pts


class JOYVASA_OT_preview_crop(EngineRunMixin, bpy.types.Operator):
    """Frame the portrait with the current settings (engine crop, a second or two) and show the 512x512 crop the animation will use"""
    bl_idname = "joyvasa.preview_crop"
    bl_label = "Preview Crop"
    bl_options = {'REGISTER'}
    kind = "crop"

    def build(self, context):
        st = context.scene.joyvasa
        image = apply_media.resolve_portrait(context)
        out = apply_media.output_dir(context) / "crop_preview.png"
        settings = lambda prop: getattr(st, prop)  # noqa: E731
        job = requests.job_dict("crop", settings, image=image, out=str(out), **requests.framing_fields(settings))
        return job, {"out": str(out)}

    def apply(self, context, job, params):
        st = context.scene.joyvasa
        path = job.outputs.get("crop_image") or job.artifacts.get("crop_image") or params["out"]
        img = bpy.data.images.get(PREVIEW_IMAGE)
        if img is None:
            img = bpy.data.images.load(path)
            img.name = PREVIEW_IMAGE
        else:
            img.filepath = path
            img.reload()
        if hasattr(img, "preview_ensure"):
            img.preview_ensure()
        st.crop_preview = path
        st.crop_summary = framing.framing_summary(job.framing)
        st["joyvasa_preview_points"] = json.dumps(framing.crop_view_points(job.framing))  # drawn over the crop
        detected = framing.points_from_event(job.framing)
        st["joyvasa_detected_points"] = json.dumps(detected) if detected else ""
        return f"Crop preview: {st.crop_summary or 'done'} ({bpy.path.basename(path)})"


class JOYVASA_OT_use_detected_points(bpy.types.Operator):
    """Copy the points the last preview detected into Face Points, to correct them by hand"""
    bl_idname = "joyvasa.use_detected_points"
    bl_label = "Edit Detected Points"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return bool(context.scene.joyvasa.get("joyvasa_detected_points"))

    def execute(self, context):
        st = context.scene.joyvasa
        st.face_points = json.loads(st["joyvasa_detected_points"])
        st.crop_mode = "POINTS"
        return {'FINISHED'}


class JOYVASA_OT_frame_face(bpy.types.Operator):
    """Click the two eyes and the mouth centre on the portrait (Image Editor); Esc or right click cancels. The points are stored with the scene and frame the face for the preview and the render"""
    bl_idname = "joyvasa.frame_face"
    bl_label = "Frame Face"
    bl_options = {'REGISTER', 'UNDO'}

    view_points: FloatVectorProperty(
        name="View Points", size=6, options={'SKIP_SAVE', 'HIDDEN'},
        description="Eye, eye, mouth in the Image Editor's normalised view coordinates (scripting; "
                    "the interactive tool fills them from clicks)")

    _handle = None

    def _finish_points(self, context, view_points) -> set:
        try:
            img = portrait_datablock(context)
            w, h = img.size
            if not w or not h:
                raise ValueError(f"image {img.name} has no pixels")
            orientation = framing.exif_orientation(apply_media.resolve_portrait(context))
            pts = store_points(context.scene.joyvasa, view_points, w, h, orientation)
        except (ValueError, OSError) as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        self.report({'INFO'}, "Face points: " + ", ".join(f"({x:.0f}, {y:.0f})" for x, y in pts))
        return {'FINISHED'}

    def execute(self, context):
        v = list(self.view_points)
        if not any(v):
            self.report({'ERROR'}, "Frame Face: click the points in the Image Editor (or pass view_points)")
            return {'CANCELLED'}
        return self._finish_points(context, [v[0:2], v[2:4], v[4:6]])

    # -- interactive --------------------------------------------------------------------------
    def invoke(self, context, event):
        if any(self.view_points):
            return self.execute(context)
        area = context.area
        if area is None or area.type != 'IMAGE_EDITOR':
            self.report({'ERROR'}, "Frame Face works in the Image Editor: open one, then use the "
                                   "JoyVASA tab of its sidebar (N)")
            return {'CANCELLED'}
        try:
            img = portrait_datablock(context)
        except ValueError as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        context.space_data.image = img
        self._clicks = []
        self._header(context)
        self._handle = bpy.types.SpaceImageEditor.draw_handler_add(_draw_clicks, (self, context), 'WINDOW',
                                                                    'POST_PIXEL')
        context.window_manager.modal_handler_add(self)
        return {'RUNNING_MODAL'}

    def _header(self, context) -> None:
        step = framing.STEPS[len(self._clicks)] if len(self._clicks) < 3 else ""
        context.area.header_text_set(f"Frame Face: click the {step} ({len(self._clicks) + 1}/3) · "
                                     "Esc / right click: cancel · wheel / middle mouse: zoom and pan")

    def _end(self, context) -> None:
        if self._handle is not None:
            bpy.types.SpaceImageEditor.draw_handler_remove(self._handle, 'WINDOW')
            self._handle = None
        if context.area is not None:
            context.area.header_text_set(None)
            context.area.tag_redraw()

    def modal(self, context, event):
        if event.type in {'ESC', 'RIGHTMOUSE'} and event.value == 'PRESS':
            self._end(context)
            return {'CANCELLED'}
        if event.type == 'LEFTMOUSE' and event.value == 'PRESS':
            region = context.region
            if region is None or region.type != 'WINDOW':
                return {'PASS_THROUGH'}
            u, v = region.view2d.region_to_view(event.mouse_region_x, event.mouse_region_y)
            self._clicks.append((u, v))
            context.area.tag_redraw()
            if len(self._clicks) == 3:
                self._end(context)
                return self._finish_points(context, self._clicks)
            self._header(context)
            return {'RUNNING_MODAL'}
        return {'PASS_THROUGH'}


def _draw_clicks(op, context) -> None:
    """Dots where the user clicked (pixel space of the Image Editor region)."""
    try:
        import gpu
        from gpu_extras.batch import batch_for_shader
    except ImportError:
        return
    region = context.region
    pts = [region.view2d.view_to_region(u, v, clip=False) for u, v in getattr(op, "_clicks", [])]
    if not pts:
        return
    shader = gpu.shader.from_builtin('UNIFORM_COLOR')
    gpu.state.point_size_set(10.0)
    batch = batch_for_shader(shader, 'POINTS', {"pos": [(float(x), float(y)) for x, y in pts]})
    shader.uniform_float("color", (1.0, 0.2, 0.6, 1.0))
    batch.draw(shader)


CLASSES = (JOYVASA_OT_preview_crop, JOYVASA_OT_use_detected_points, JOYVASA_OT_frame_face)


def _draw_preview_points(context=None) -> None:
    """Dots on the crop preview where the framing's landmarks fell (X-Pose's 9 points for animals):
    drawn whenever an Image Editor shows the preview image."""
    try:
        import gpu
        from gpu_extras.batch import batch_for_shader
    except ImportError:
        return
    context = context or bpy.context
    space, region = getattr(context, "space_data", None), getattr(context, "region", None)
    image = getattr(space, "image", None)
    if image is None or region is None or not image.name.startswith(PREVIEW_IMAGE):
        return
    pts = preview_points(context.scene)
    if not pts:
        return
    px = [region.view2d.view_to_region(u, v, clip=False) for u, v in pts]
    shader = gpu.shader.from_builtin('UNIFORM_COLOR')
    gpu.state.point_size_set(7.0)
    batch = batch_for_shader(shader, 'POINTS', {"pos": [(float(x), float(y)) for x, y in px]})
    shader.uniform_float("color", (0.2, 1.0, 0.4, 1.0))
    batch.draw(shader)


def preview_points(scene) -> list[tuple[float, float]]:
    """The last preview's landmark points (view coordinates of the crop image) stored with the scene."""
    try:
        return [tuple(p) for p in json.loads(scene.joyvasa.get("joyvasa_preview_points") or "[]")]
    except (ValueError, TypeError, AttributeError):
        return []


_draw_handle = None


def register_draw() -> None:
    global _draw_handle
    if _draw_handle is None:
        _draw_handle = bpy.types.SpaceImageEditor.draw_handler_add(_draw_preview_points, (), 'WINDOW', 'POST_PIXEL')


def unregister_draw() -> None:
    global _draw_handle
    if _draw_handle is not None:
        bpy.types.SpaceImageEditor.draw_handler_remove(_draw_handle, 'WINDOW')
        _draw_handle = None

