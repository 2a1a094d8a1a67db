"""``python -m engine serve``: requests in, job-stamped events out, networks loaded once per worker."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.errors import BadRequest
from engine.contract.protocol import PROTOCOL_MINOR, make_request
from engine_testkit import engine_env, speech_clip

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "examples" / "speech.wav"
PORTRAIT = REPO / "examples" / "portrait.jpg"


class Worker:
    """A real ``python -m engine serve`` process; events are read on a thread so tests can wait for them."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "engine", "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=engine_env(),
                                     cwd=REPO)
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.events.append(json.loads(line))
                self._cond.notify_all()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line if line.endswith("\n") else line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, pred, timeout: float = 300) -> dict[str, Any]:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(pred(e) for e in self.events), timeout=timeout)
            assert ok, f"timed out; events so far: {self.events[-5:]}"
            return next(e for e in self.events if pred(e))

    def end(self, job: str) -> dict[str, Any]:
        return self.wait_for(lambda e: e.get("job") == job and e["type"] in ("done", "error", "cancelled"))

    def job_events(self, job: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("job") == job]

    def close(self, timeout: float = 120) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)


def _motion_args(weights: Path, audio: Path, out: Path, **kw: Any) -> dict[str, Any]:
    return {"audio": str(audio), "out": str(out), "weights": str(weights), "device": "cpu", **kw}


@pytest.mark.slow
def test_worker_loads_once_cancels_releases_and_exits_on_eof(tiny_weights: Path, tmp_path: Path) -> None:
    w = Worker()
    try:
        hello = w.wait_for(lambda e: e["type"] == "hello" and e.get("command") == "serve")
        assert hello["protocol"] == [1, PROTOCOL_MINOR] and {"motion", "animate", "doctor"} <= set(
            hello["capabilities"]["commands"])
        short = speech_clip(tmp_path, 1.0)
        # 1. first take loads the networks; every event of the request carries its job id
        w.send(make_request("run", "a", command="motion",
                            args=_motion_args(tiny_weights, short, tmp_path / "a.npz", seed=1, sampler="ddim", steps=2)))
        assert w.end("a")["type"] == "done"
        ev_a = w.job_events("a")
        assert ev_a[0]["type"] == "hello" and all(e["job"] == "a" for e in ev_a)
        assert any(e["type"] == "progress" and e["stage"] == "load" for e in ev_a)
        # 2. a bad request gets an error event and the worker keeps serving
        w.send("this is not json")
        w.send(make_request("run", "bad", command="motion", args={"audio": str(short), "colour": "red"}))
        assert w.end("bad")["type"] == "error" and w.end("bad")["code"] == "bad_request"
        w.send(make_request("run", "nocmd", command="teleport", args={}))
        assert w.end("nocmd")["code"] == "bad_request"
        # 3. second take: same networks (no load stage), same audio features, new seed, boolean flag mapping
        w.send(make_request("run", "b", command="motion",
                            args=_motion_args(tiny_weights, short, tmp_path / "b.npz", seed=2, sampler="ddim",
                                              steps=2, smooth=False)))
        done_b = w.end("b")
        assert done_b["type"] == "done" and (tmp_path / "b.npz").is_file()
        assert not any(e["type"] == "progress" and e["stage"] == "load" for e in w.job_events("b"))
        assert "load" not in done_b["breakdown"] and "encode" not in done_b["breakdown"]
        from engine.motion.npz import load_motion
        assert load_motion(tmp_path / "b.npz").smoothed is False
        # 4. cancel a long take at its first window: cancelled event, no output left behind
        long_audio = speech_clip(tmp_path, 8.0, "long.wav")
        w.send(make_request("run", "c", command="motion",
                            args=_motion_args(tiny_weights, long_audio, tmp_path / "c.npz", sampler="ancestral")))
        w.wait_for(lambda e: e.get("job") == "c" and e["type"] == "progress" and e["stage"] == "motion")
        w.send(make_request("cancel", "c"))
        assert w.end("c")["type"] == "cancelled"
        assert not (tmp_path / "c.npz").exists() and not list(tmp_path.glob("*.tmp*"))
        # 5. release frees the networks: the next take loads again
        w.send(make_request("release", "r"))
        assert w.end("r")["released"] >= 1
        w.send(make_request("run", "d", command="motion",
                            args=_motion_args(tiny_weights, short, tmp_path / "d.npz", sampler="ddim", steps=2)))
        assert w.end("d")["type"] == "done"
        assert any(e["type"] == "progress" and e["stage"] == "load" for e in w.job_events("d"))
        # 6. end of stdin: exit 0
        assert w.close() == 0
    finally:
        if w.proc.poll() is None:
            w.proc.kill()


@pytest.mark.slow
def test_two_animate_requests_load_stage_one_once(tiny_weights: Path, tmp_path: Path) -> None:
    """In-process worker over a finished stdin: two renders, one stage-one load, one motion load."""
    from engine.device import cpu_has_native_bf16      # emulated bf16 (AVX2-only CPUs) renders very slowly
    from engine.serve import Worker as ServeWorker

    audio = speech_clip(tmp_path, 0.2)
    lines = "".join(make_request("run", f"r{i}", command="animate",
                                 args={"image": str(PORTRAIT), "audio": str(audio), "weights": str(tiny_weights),
                                       "frames_dir": str(tmp_path / f"f{i}"), "crop": "none", "pasteback": False,
                                       "max_frames": 2, "sampler": "ddim", "steps": 2, "seed": i,
                                       "device": "cpu", "dtype": "bf16" if cpu_has_native_bf16() else "fp32"})
                    for i in range(2))
    out = io.StringIO()
    worker = ServeWorker(io.StringIO(lines), out)
    assert worker.serve() == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    ends = [e for e in events if e["type"] in ("done", "error", "cancelled")]
    assert [(e["job"], e["type"]) for e in ends] == [("r0", "done"), ("r1", "done")], ends
    assert worker.models.loads["stage_one"] == 1 and worker.models.loads["motion"] == 1
    assert (tmp_path / "f1" / "frame_00000.png").is_file()


def test_request_args_are_the_jobs_wire_form() -> None:
    """A request's ``args`` are the typed job's flat wire form (engine/jobs.py): switch pairs by their
    positive name, lists for crop boxes' text given as a string, null = the default."""
    from engine.jobs import AnimateJob, job_from_dict

    job = job_from_dict({"image": "p.png", "audio": "a.wav", "out": "o.mp4", "cfg_scale": 1.5, "smooth": False,
                         "relative": False, "stitching": True, "pasteback": False, "crop": "1,2,30,40",
                         "animal": False, "pe": "legacy", "steps": None}, "animate")
    assert isinstance(job, AnimateJob)
    assert (job.motion.smooth, job.render.relative, job.render.pasteback, job.render.crop) == \
        (False, False, False, "1,2,30,40")
    assert job.motion.cfg_scale == 1.5 and job.motion.pe_variant == "legacy" and job.motion.steps is None
    base = {"image": "p.png", "audio": "a.wav", "out": "o.mp4"}
    for bad in ({"colour": "red"}, {"animal": "yes"}, {"cfg_scale": True}, {"progress": "text"},
                {"no_smooth": True}, {"cfg_scale": "1.5"}):
        with pytest.raises(BadRequest):
            job_from_dict({**base, **bad}, "animate")
    with pytest.raises(BadRequest, match="needs --image"):
        job_from_dict({}, "animate")


def test_crop_request_and_unknown_command_through_the_one_table(tmp_path: Path) -> None:
    """``crop`` runs because its job type names a pipeline (engine/jobs.py, the one registry); an
    unknown command is a bad_request."""
    from engine.jobs import CropJob
    from engine.pipeline import pipeline_commands
    from engine.serve import Worker as ServeWorker

    assert CropJob.pipeline and "crop" in pipeline_commands()
    lines = (make_request("run", "k", command="crop", args={"image": str(PORTRAIT), "out": str(tmp_path / "c.png")})
             + make_request("run", "x", command="teleport", args={}))
    out = io.StringIO()
    assert ServeWorker(io.StringIO(lines), out).serve() == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    ends = {e["job"]: e for e in events if e["type"] in ("done", "error", "cancelled")}
    assert ends["k"]["type"] == "done" and ends["k"]["outputs"]["crop_image"] == str(tmp_path / "c.png")
    assert (tmp_path / "c.png").is_file() and any(e["type"] == "framing" and e["job"] == "k" for e in events)
    assert ends["x"]["type"] == "error" and ends["x"]["code"] == "bad_request"


def test_fetch_job_is_a_clear_bad_request_through_serve_and_run_job(tmp_path: Path, capsys) -> None:
    """``fetch`` is a job type without a pipeline: through ``serve`` and ``run --job`` it is one
    non-fatal-to-the-worker ``bad_request`` that says where it runs, never ``internal``."""
    from engine.cli import main
    from engine.serve import Worker as ServeWorker

    args = {"out": str(tmp_path / "w")}
    out = io.StringIO()
    assert ServeWorker(io.StringIO(make_request("run", "f", command="fetch", args=args)), out).serve() == 0
    ends = [json.loads(line) for line in out.getvalue().splitlines() if '"error"' in line]
    assert [(e["job"], e["code"]) for e in ends] == [("f", "bad_request")]
    assert "python -m engine fetch" in ends[0]["message"]
    (tmp_path / "job.json").write_text(json.dumps({"command": "fetch", **args}))
    assert main(["run", "--job", str(tmp_path / "job.json"), "--progress", "json"]) == 1
    errors = [e for e in map(json.loads, capsys.readouterr().out.splitlines()) if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["bad_request"] and "python -m engine fetch" in errors[0]["message"]
    assert not (tmp_path / "w").exists()
