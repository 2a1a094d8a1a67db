"""JoyVASA for Blender: audio-driven head pose, expression and portrait animation.

The add-on never imports torch or engine code: it runs the engine (a separate Python
environment chosen in the preferences) as a subprocess and reads its JSON-lines events
(core/contract/protocol.py). Importing this package imports nothing from bpy, so the bpy-free
``core`` package (protocol, engine_client, jobs, motion_core, semantic, framing) is testable with plain
pytest; the bpy shells (operators, panels, properties, keying, sequencer) are imported in
register().
"""
from __future__ import annotations

_registered: list = []


def _classes():
    from . import (ops_engine, ops_export, ops_framing, ops_live, ops_motion, ops_render, ops_rigs, ops_weights, prefs,
                   props, ui_live, ui_panels)
    return (props.CLASSES + ops_weights.CLASSES + ops_engine.CLASSES + prefs.CLASSES + ops_motion.CLASSES
            + ops_framing.CLASSES
            + ops_render.CLASSES
            + ops_export.CLASSES + ops_rigs.CLASSES
            + ui_panels.CLASSES + ops_live.CLASSES + ui_live.CLASSES)


def _on_load_pre(*_args):
    from . import runtime
    runtime.cancel_all(stop_engine=False)


def register() -> None:
    import bpy

    from . import props
    for cls in _classes():
        bpy.utils.register_class(cls)
        _registered.append(cls)
    props.register_props()
    from . import ops_live
    ops_live.register_props()
    from . import ops_export, ops_framing
    ops_export.register_menus()
    ops_framing.register_draw()  # the crop preview's landmark dots
    bpy.app.handlers.persistent(_on_load_pre)
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister() -> None:
    import bpy

    from . import props, runtime
    runtime.cancel_all()
    from .ops_weights import _poll_fetch
    from .engine_setup import _idle_check, _poll_installer
    for timer in (_poll_installer, _idle_check, _poll_fetch):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    from . import ops_export, ops_framing
    ops_export.unregister_menus()
    ops_framing.unregister_draw()
    props.unregister_props()
    from . import ops_live
    ops_live.unregister_props()
    for cls in reversed(_registered):
        bpy.utils.unregister_class(cls)
    _registered.clear()
