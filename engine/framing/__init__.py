"""Face framing: where the 512² crop that the networks see sits in the picture.

``frame.py`` (the one entry point, :func:`engine.framing.frame.frame_portrait`, pictures, borders,
``--crop`` parsing), ``geometry.py`` (upstream's formula), ``detect.py`` (which detector),
``mtcnn.py`` (the default human detector), ``face_mesh.py`` + ``tflite.py`` (the lip-open ratio),
``insightface.py`` (upstream's ONNX files when present), ``animal.py`` (cat cascade, centred fallback). See README.md beside this file.
"""
