"""``python -m engine batch JOBS.json``: many motion/animate jobs, locally or on a Ray cluster.

    python -m engine batch jobs.json [--ray auto|HOST:PORT] [--workers N] [--gpus-per-worker G]
                                     [--weights DIR] [--max-retries K] [--force] [--progress json]

Without ``--ray``: one warm worker in this process, jobs in file order. With ``--ray``: a pool of
Ray actors (``pip install -e '.[ray]'``). Job file schema: :mod:`engine.batch`. Finished jobs
(done marker in ``JOBS.json.state/`` + outputs present) are skipped on a re-run. Exit code 0
when every job succeeded or was skipped, 1 when any failed, 2 bad command line, 130 cancelled.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("jobs", help="job file (JSON list of {\"command\": \"motion\"|\"animate\", \"out\": ..., args})")
    p.add_argument("--ray", metavar="auto|HOST:PORT", default=None,
                   help="run on Ray: 'auto' joins the local cluster or starts one; HOST:PORT joins that head node")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray actors (default: as many as the cluster's GPUs / CPUs allow, at most one per job)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each Ray actor reserves (default 0)")
    p.add_argument("--weights", default=None, help="weights folder for jobs that name none (default $JOYVASA_WEIGHTS)")
    p.add_argument("--max-retries", type=int, default=2,
                   help="times a job is retried when its worker dies (default 2); failed jobs are not retried")
    p.add_argument("--force", action="store_true", help="re-run jobs that are already done")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: protocol-v1 events on stdout (the summary is the done event's 'summary')")


def run(args: argparse.Namespace) -> int:
    from engine.batch.jobfile import load_jobs, state_dir
    from engine.batch.schedule import BatchRun, run_local
    from engine.errors import BadRequest, EngineError, MissingDependency
    from engine import __version__
    from engine.contract.protocol import EXIT_CANCELLED, EXIT_ERROR, PROTOCOL_MAJOR, PROTOCOL_MINOR, EventWriter

    json_out = args.progress == "json"
    real_stdout = sys.stdout
    events = EventWriter(real_stdout if json_out else None)
    sys.stdout = sys.stderr      # stdout carries protocol lines (and the summary) only: Ray prints too
    said_hello = False
    try:
        if args.workers is not None and args.workers < 1:
            raise BadRequest("--workers must be >= 1")
        if args.gpus_per_worker < 0 or args.max_retries < 0:
            raise BadRequest("--gpus-per-worker and --max-retries must be >= 0")
        if args.gpus_per_worker and not args.ray:
            raise BadRequest("--gpus-per-worker needs --ray")
        jobs = load_jobs(Path(args.jobs), args.weights)
        batch = BatchRun(jobs, state_dir(Path(args.jobs)), events, force=args.force)
        todo = batch.todo()
        events.emit("hello", engine_version=__version__, protocol=[PROTOCOL_MAJOR, PROTOCOL_MINOR],
                    command="batch", jobs=len(jobs), skipped=len(batch.skipped),
                    backend="ray" if args.ray else "local", workers=args.workers)
        said_hello = True
        batch.log(f"{len(jobs)} job(s), {len(todo)} to run, {len(batch.skipped)} already done"
                  + (f", on Ray ({args.ray})" if args.ray else ", locally"))
        if args.ray:
            try:
                from engine.batch.ray_pool import run_ray
            except ImportError:
                raise MissingDependency("--ray needs Ray, the engine's optional extra: pip install -e '.[ray]' "
                                        "(or pip install 'ray>=2.40')", package="ray") from None
            run_ray(batch, todo, address=args.ray, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                    max_retries=args.max_retries)
        else:
            run_local(batch, todo)
        return batch.finish(None if json_out else real_stdout)
    except EngineError as exc:
        if not said_hello:  # a bad job file: hello is still the first event (protocol)
            events.emit("hello", engine_version=__version__, protocol=[PROTOCOL_MAJOR, PROTOCOL_MINOR],
                        command="batch", jobs=0, skipped=0, backend="ray" if args.ray else "local",
                        workers=args.workers)
        events.emit("error", code=exc.code, message=str(exc), fatal=True)
        print(f"error [{exc.code}]: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        events.emit("cancelled", at={"stage": "batch", "done": 0})
        print("cancelled", file=sys.stderr, flush=True)
        return EXIT_CANCELLED
    finally:
        sys.stdout = real_stdout
