"""errors.classify_failure and engine/preflight.py: which library failures get which stable code."""
from __future__ import annotations

import errno
import sys

import pytest
import torch

from engine import jobs, preflight
from engine.errors import BadRequest, DiskFull, MissingDependency, classify_failure


def _cpu_allocator_error() -> BaseException:
    try:
        torch.empty((1 << 50,), dtype=torch.uint8)
    except RuntimeError as exc:
        return exc
    raise AssertionError("the allocation succeeded")


@pytest.mark.parametrize("exc", [
    _cpu_allocator_error(),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total capacity)"),
    RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB, other allocations: 1.2 GB)"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    MemoryError(),
], ids=["cpu-allocator", "cuda", "mps", "cublas", "MemoryError"])
def test_allocator_errors_are_oom_with_a_hint(exc: BaseException) -> None:
    coded = classify_failure(exc)
    assert coded is not None and coded.code == "oom"
    assert "--batch" in str(coded) and "bfloat16" in str(coded) and "shorter clip" in str(coded)


@pytest.mark.parametrize("num", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_full_disk_errors_are_disk_full(num: int) -> None:
    coded = classify_failure(OSError(num, "No space left on device", "/out/clip.mp4"))
    assert coded is not None and coded.code == "disk_full" and "/out/clip.mp4" in str(coded)


def test_missing_engine_package_is_missing_dependency_and_others_are_internal() -> None:
    coded = classify_failure(ModuleNotFoundError("No module named 'librosa'", name="librosa"))
    assert isinstance(coded, MissingDependency) and coded.package == "librosa"
    assert f"{sys.executable} -m pip install librosa" in str(coded)
    assert classify_failure(ModuleNotFoundError("No module named 'x'", name="some_private_module")) is None
    assert classify_failure(RuntimeError("shape mismatch in a matmul")) is None
    assert classify_failure(OSError(errno.EACCES, "Permission denied")) is None


def test_broken_package_is_named_as_broken(monkeypatch) -> None:
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):  # type: ignore[no-untyped-def]
        if name == "av":
            raise ImportError("libavcodec.so.61: cannot open shared object file")
        return real(name, *a, **k)

    monkeypatch.setattr(preflight.importlib, "import_module", fake)
    with pytest.raises(MissingDependency, match="cannot be imported.*libavcodec") as info:
        preflight.require_packages(["numpy", "av"])
    assert info.value.package == "av"


@pytest.mark.parametrize("value,ok", [(1.0, True), (120.0, True), (0.99, False), (120.01, False),
                                      (float("nan"), False), (float("inf"), False), (None, True)])
def test_fps_bounds(value, ok: bool) -> None:
    if ok:
        jobs.check_number("--fps", value, jobs.FPS_MIN, jobs.FPS_MAX)
    else:
        with pytest.raises(BadRequest, match="--fps"):
            jobs.check_number("--fps", value, jobs.FPS_MIN, jobs.FPS_MAX)


def test_seed_range_matches_the_motion_file_int64() -> None:
    import numpy as np

    assert jobs.SEED_MAX == np.iinfo(np.int64).max
    jobs.check_sampling(jobs.SEED_MAX, None, None)
    with pytest.raises(BadRequest, match="--seed"):
        jobs.check_sampling(jobs.SEED_MAX + 1, None, None)


def test_free_space_estimate(tmp_path, monkeypatch) -> None:
    import collections

    usage = collections.namedtuple("usage", "total used free")
    size = preflight.AnimateSize(frames=250, width=512, height=512)      # 10 s at 25 fps
    need = size.mp4_bytes() + size.png_bytes()
    monkeypatch.setattr(preflight.shutil, "disk_usage",
                        lambda p: usage(1 << 40, 0, need + preflight.SPACE_MARGIN_BYTES + 1))
    preflight.check_animate_space(tmp_path / "a.mp4", tmp_path / "frames", size)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: usage(1 << 40, 0, need))
    with pytest.raises(DiskFull, match="MiB free"):
        preflight.check_animate_space(tmp_path / "a.mp4", tmp_path / "frames", size)
    # a folder that does not exist yet is measured on its nearest existing parent
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: usage(1 << 40, 0, 0) if p == tmp_path else 1 / 0)
    with pytest.raises(DiskFull):
        preflight.check_free_space(tmp_path / "new" / "deeper", 1, "x")
