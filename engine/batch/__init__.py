"""``engine batch``: many motion/animate jobs on one warm worker or on a Ray cluster.

Job file (JSON): a list of jobs (or ``{"jobs": [...], "defaults": {...}}``, defaults merged into
every job). Each job is the warm worker's request ``args`` plus the command::

    {"command": "motion" | "animate", "out": "PATH", "id": "optional-name",
     "audio": "...", "image": "...", "seed": 3, "sampler": "ddim", "frames_dir": "...", ...}

Every other key is a long option of that command without dashes and with ``_`` for ``-``
(``cfg_scale``, ``pose_strength``, ``upstream_timing``: true, ``smooth``: false -> ``--no-smooth``),
validated by the command's own parser. ``weights`` defaults to ``--weights`` or
``$JOYVASA_WEIGHTS``; relative paths are relative to the job file; ``progress`` is the batch's.

Modules: :mod:`.jobfile` (reading, validation, done markers), :mod:`.paths` (marker paths),
:mod:`.execute` (a job = a warm-worker request: the job type's checks, its pipeline, a model cache), :mod:`.worker` (one warm
worker), :mod:`.schedule` (the local loop, progress, summary), :mod:`.ray_pool` (Ray actors; the only module that imports ``ray``).
"""
