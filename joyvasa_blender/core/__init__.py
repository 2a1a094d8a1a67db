"""The add-on's bpy-free core: everything that can be tested with plain pytest.

Why a package of its own: the bpy shells (operators, panels, properties, keying, Sequencer)
change with Blender's API; the core (protocol copy, engine client, jobs, motion file reading,
rotations, retargeting, semantic projection) must not. Nothing under ``core/`` may import bpy
(tests/addon_core/test_core_no_bpy.py fails if it does).
"""
