"""Panel and preferences draw code against a recording layout (no UI in background mode):
every property a panel shows must exist, every operator must be registered."""
from __future__ import annotations

import types

import bpy

from conftest import MODULE, addon


class Layout:
    """Accepts the UILayout calls the panels use and checks their arguments."""

    def __init__(self, log):
        self.log = log
        self.enabled, self.scale_y, self.alert = True, 1.0, False

    def _child(self, *a, **k):
        return Layout(self.log)

    row = column = box = split = _child

    def prop(self, data, name, **kw):
        assert hasattr(data, name) or name in data.bl_rna.properties, f"no property {name} on {data}"
        self.log.append(("prop", name))

    def prop_search(self, data, name, search_data, search_name, **kw):
        assert hasattr(data, name), name
        assert hasattr(search_data, search_name), f"{search_data} has no collection {search_name}"
        self.log.append(("prop_search", name))

    def operator(self, idname, **kw):
        mod, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, mod), name), idname
        self.log.append(("operator", idname))
        return types.SimpleNamespace()

    def operator_menu_enum(self, idname, prop, **kw):
        mod, name = idname.split(".")
        op = getattr(getattr(bpy.ops, mod), name)
        assert prop in op.get_rna_type().properties, f"{idname} has no property {prop}"
        self.log.append(("operator", idname))

    def template_list(self, listtype, list_id, data, name, active_data, active_name, **kw):
        assert hasattr(bpy.types, listtype), f"UIList {listtype} not registered"
        assert hasattr(data, name) and hasattr(active_data, active_name), (name, active_name)
        self.log.append(("template_list", name))

    def label(self, text="", **kw):
        assert isinstance(text, str)
        self.log.append(("label", text))

    def progress(self, factor=0.0, type='BAR', text=""):
        assert 0.0 <= factor <= 1.0 and "progress" in bpy.types.UILayout.bl_rna.functions
        self.log.append(("progress", text))

    def template_ID(self, data, name, **kw):
        assert hasattr(data, name)
        self.log.append(("template_ID", name))

    def separator(self, **kw):
        pass

    def template_icon(self, icon_value=0, scale=1.0):
        assert isinstance(icon_value, int) and "template_icon" in bpy.types.UILayout.bl_rna.functions
        self.log.append(("template_icon", icon_value))


def draw(cls, context):
    log = []
    panel = types.SimpleNamespace(layout=Layout(log))
    cls.draw(panel, context)
    return log


def test_panels_draw_in_all_states(scene, tmp_path):
    st = scene.joyvasa
    ctx = bpy.context
    for src in ("FILE", "STRIP"):
        for psrc in ("FILE", "IMAGE"):
            st.audio_source, st.portrait_source = src, psrc
            st.axis_mode = "MANUAL"
            st.head_location = True
            scene.sequence_editor_create()
            for cls in (bpy.types.JOYVASA_PT_view3d, bpy.types.JOYVASA_PT_sequencer):
                log = draw(cls, ctx)
                ops = {x[1] for x in log if x[0] == "operator"}
                assert {"joyvasa.generate_motion", "joyvasa.render_portrait", "joyvasa.apply_motion",
                        "joyvasa.render_preview", "joyvasa.open_output_folder", "joyvasa.show_sequencer_scene"} <= ops
                props = {x[1] for x in log if x[0] == "prop"}
                assert {"head_strength", "expression_strength", "lip_strength", "eye_strength", "seed",
                        "animal", "output_dir", "sequencer_scene"} <= props
    # while a job runs: a progress bar with the stage text and a Cancel button
    runtime, jobs = addon("runtime"), addon("core.run_state")
    job = jobs.JobState(kind="motion")
    job.start()
    job.feed({"type": "progress", "stage": "motion", "done": 2, "total": 4, "eta_s": 3.0})
    runtime.CURRENT = runtime.Running(job=job, proc=types.SimpleNamespace(), kind="motion")
    try:
        log = draw(bpy.types.JOYVASA_PT_view3d, ctx)
        assert ("progress", "Generating motion 2/4, ETA 3s") in log
        assert ("operator", "joyvasa.cancel") in log
    finally:
        runtime.CURRENT = None
    # after a failure: the message and the stderr tail
    job.finish(1, ["Traceback", "RuntimeError: boom"])
    runtime.LAST = job
    labels = [x[1] for x in draw(bpy.types.JOYVASA_PT_view3d, ctx) if x[0] == "label"]
    assert any("boom" in t for t in labels)


def test_preferences_draw():
    prefs = bpy.context.preferences.addons[MODULE].preferences
    log = []
    type(prefs).draw(types.SimpleNamespace(layout=Layout(log), **{k: getattr(prefs, k) for k in
                                                                  ("engine_python", "weights_dir", "device", "dtype", "engine_src",
                                                                   "output_dir", "unsaved_output_dir", "watchdog_s",
                                                                   "keep_warm", "idle_minutes", "download_dir",
                                                                   "fetch_animals", "fetch_xpose", "fetch_detector", "torch_build")}),
                     bpy.context)
    ops = {x[1] for x in log if x[0] == "operator"}
    assert {"joyvasa.check_engine", "joyvasa.install_engine", "joyvasa.detect_python", "joyvasa.download_weights"} <= ops
    assert ("prop", "torch_build") in log and any(x[0] == "label" and x[1].startswith("Torch: ") for x in log)
    assert ("label", f"Supports Blender 4.2 LTS – 5.3 (this is {bpy.app.version_string})") in log
