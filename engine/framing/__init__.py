"""Face framing: where the 512² crop that the networks see sits in the picture.

``frame.py`` (the one entry point, :func:`engine.framing.frame.frame_portrait`), ``crop.py`` (the
options, the result, pictures, borders, the crop from a box or three points), ``geometry.py`` (upstream's formula), ``detect.py`` (which detector),
``mtcnn.py`` (the default human detector), ``face_mesh.py`` + ``tflite.py`` (the lip-open ratio),
``insightface.py`` (upstream's ONNX files when present), ``haar.py`` (Haar cascades: the human
fallback and the cat face), ``animal.py`` (X-Pose, cat cascade, centred fallback). See README.md beside this file.
"""
