"""The entry layer: one module per ``python -m engine`` command, turning its options into the
typed job (engine/jobs.py) and running it through :func:`engine.pipeline.run_pipeline`; the job
type names its pipeline, so adding a command is one job type and one module here.
Targets are imported on first use so that building and dispatching a job never imports torch.
"""
