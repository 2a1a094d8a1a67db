"""Ray backend of ``engine batch``: a pool of actors, each one warm :class:`Worker`.

The only module of the engine that imports ``ray`` (``pip install -e '.[ray]'``); it is imported
only when ``--ray`` is given. Each actor is a separate process that loads the networks once and
takes jobs one at a time (``num_gpus`` per actor when asked, so Ray pins one GPU share to each).
Outputs are written by the engine's atomic writers, straight to their final paths (use storage
every node sees). A job whose actor dies (killed, OOM, node lost) is retried on a fresh actor
up to ``max_retries`` times, after removing the partial files the dead worker left; a job that
fails by itself (bad input) is not retried: it would fail again.
"""
from __future__ import annotations

import os
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import ray

from engine.batch.jobfile import BatchJob
from engine.batch.schedule import BatchRun, remove_partials
from engine.errors import BadRequest, DeviceUnavailable

if TYPE_CHECKING:
    from ray.actor import ActorHandle


@ray.remote(max_restarts=0, max_task_retries=0)
class EngineActor:
    def __init__(self) -> None:
        from engine.batch.worker import Worker

        self.worker = Worker()

    def pid(self) -> int:
        return os.getpid()

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.worker.run(request)


def connect(address: str) -> bool:
    """Join the cluster at ``address`` (``auto``: a running local cluster, else start one just for
    this batch). Returns True when this process started the cluster."""
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING",
                              "ignore_reinit_error": True}
    if address == "auto":
        try:
            ray.init(address="auto", **kwargs)
            return False
        except ConnectionError:
            ray.init(**kwargs)
            return True
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise BadRequest(f"cannot join the Ray cluster at {address}: {exc}. If the cluster uses token "
                         "authentication (the default of `ray start` in recent Ray), set RAY_AUTH_MODE=token "
                         "and provide the head's token as Ray's token-auth docs say.") from None
    return False


def pool_size(workers: int | None, gpus_per_worker: float, n_jobs: int) -> int:
    res = ray.cluster_resources()
    if gpus_per_worker > 0:
        gpus = float(res.get("GPU", 0))
        if gpus < gpus_per_worker:
            raise DeviceUnavailable(f"--gpus-per-worker {gpus_per_worker:g}, but the Ray cluster has {gpus:g} GPU(s)")
        fit = int(gpus // gpus_per_worker)
    else:
        fit = max(1, int(res.get("CPU", 1)))
    return max(1, min(workers or fit, n_jobs))


def run_ray(run: BatchRun, todo: list[BatchJob], *, address: str, workers: int | None, gpus_per_worker: float,
            max_retries: int) -> None:
    started = connect(address)
    try:
        _loop(run, todo, workers, gpus_per_worker, max_retries)
    finally:
        ray.shutdown()          # disconnects; also stops the cluster when this process started it
        if started:
            run.log("local Ray cluster stopped")


def _loop(run: BatchRun, todo: list[BatchJob], workers: int | None, gpus: float, max_retries: int) -> None:
    total = len(todo)
    if not total:
        run.progress(0)
        return
    size = pool_size(workers, gpus, total)
    opts: dict[str, Any] = {"num_cpus": 1}
    if gpus > 0:
        opts["num_gpus"] = gpus

    actors: list[Any] = []

    def new_actor() -> tuple[ActorHandle, int]:
        actor = EngineActor.options(**opts).remote()
        actors.append(actor)
        return actor, ray.get(actor.pid.remote())

    try:
        _schedule(run, todo, size, new_actor, max_retries)
    finally:
        for actor in actors:          # end the worker processes now, not when the cluster notices
            ray.kill(actor, no_restart=True)


def _schedule(run: BatchRun, todo: list[BatchJob], size: int, new_actor: Callable[[], tuple[ActorHandle, int]],
              max_retries: int) -> None:
    total = len(todo)
    idle: deque[tuple[Any, int]] = deque(new_actor() for _ in range(size))
    run.log(f"{size} Ray worker(s): pids {', '.join(str(pid) for _, pid in idle)}")
    pending: deque[BatchJob] = deque(todo)
    inflight: dict[Any, tuple[BatchJob, Any, int]] = {}
    run.progress(total)
    while pending or inflight:
        while pending and idle:
            job = pending.popleft()
            actor, pid = idle.popleft()
            inflight[actor.run.remote(job.to_request())] = (job, actor, pid)
            run.log(f"{job.id}: {job.command} started on worker pid {pid} (attempt {job.attempt + 1})")
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
        for ref in ready:
            job, actor, pid = inflight.pop(ref)
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                ray.kill(actor, no_restart=True)
                remove_partials(job)
                if pending or inflight or job.attempt < max_retries:
                    idle.append(new_actor())
                reason = f"worker pid {pid} died ({type(exc).__name__})"
                if job.attempt < max_retries:
                    job.attempt += 1
                    run.retried(job, f"{reason}; retrying (attempt {job.attempt + 1} of {max_retries + 1})")
                    pending.appendleft(job)
                else:
                    run.record(job, {"ok": False, "code": "internal",
                                     "message": f"{reason}; gave up after {job.attempt + 1} attempts"})
                    run.progress(total)
                continue
            idle.append((actor, pid))
            run.record(job, result)
            run.progress(total)
