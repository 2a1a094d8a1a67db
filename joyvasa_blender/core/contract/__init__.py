"""The contract: what the engine and the Blender add-on must agree on, as whole files.

``protocol.py`` (versions, events, requests, error and exit codes, the JSON loader with
limits, the option catalog), ``npz_reader.py`` (the motion file: its schema, the lazy typed
reader and the validator), ``semantic.py`` + ``semantic_basis.json`` (the named expression
directions and their projection) and ``schema.py`` (the other names both sides share).

The source is ``engine/contract/``; ``joyvasa_blender/core/contract/`` is a verbatim copy made
by ``python tools/sync_contract.py --fix`` (``--check``, run by the tests, fails on any
difference). So these files import only the standard library, numpy and each other
(relatively): never the rest of the engine, never bpy.
"""
