"""Device/dtype policy: auto picks what exists, missing devices raise DeviceUnavailable."""
from __future__ import annotations

import pytest
import torch

from engine.device import auto_batch_size, select_device, select_precision
from engine.errors import BadRequest, DeviceUnavailable


def test_auto_and_cpu() -> None:
    dev = select_device("auto")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert dev.type == expected
    assert select_device("cpu").type == "cpu"
    assert select_precision(torch.device("cpu"), "auto").compute == torch.float32
    assert select_precision(torch.device("cpu"), "bfloat16").compute == torch.bfloat16
    assert auto_batch_size(torch.device("cpu"), None) >= 1
    assert auto_batch_size(torch.device("cpu"), 7) == 7


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailable) as exc:
        select_device("cuda")
    assert "--device cpu" in str(exc.value)


def test_bad_names() -> None:
    with pytest.raises(BadRequest):
        select_device("tpu")
    with pytest.raises(BadRequest):
        select_precision(torch.device("cpu"), "float16")
    with pytest.raises(BadRequest):
        select_precision(torch.device("cpu"), "int8")


def test_precision_spellings() -> None:
    cpu = torch.device("cpu")
    for name in ("bf16", "BF16", "bfloat16"):
        assert select_precision(cpu, name).compute == torch.bfloat16
    for name in ("fp32", "float32", "float", "auto"):
        assert select_precision(cpu, name).compute == torch.float32
    with pytest.raises(BadRequest):
        select_precision(cpu, "fp16")  # float16 on CPU: refused, whatever the spelling


# ---------------------------------------------------------------- GPU policy with faked cards
GIB = 1024.0


@pytest.mark.parametrize("capability,expected", [((7, 5), torch.float16),    # Turing: bf16 only emulated
                                                 ((6, 1), torch.float16),    # Pascal
                                                 ((8, 0), torch.bfloat16),   # Ampere A100
                                                 ((8, 6), torch.bfloat16),   # RTX 30xx
                                                 ((9, 0), torch.bfloat16)])  # Hopper
def test_auto_precision_fp16_where_bf16_is_not_native(monkeypatch, capability, expected) -> None:
    import engine.device as device

    monkeypatch.setattr(device, "cuda_capability", lambda dev: capability)
    assert device.select_precision(torch.device("cuda"), "auto").compute == expected
    # an explicit request is honoured on any card
    assert device.select_precision(torch.device("cuda"), "fp32").compute == torch.float32
    assert device.select_precision(torch.device("cuda"), "fp16").compute == torch.float16


def test_batch_plan_stays_inside_an_8gb_budget() -> None:
    from engine.device import FRAME_MB, WORKSPACE_MB, GpuMemory, plan_batch

    card = GpuMemory(total_mb=8 * GIB, free_mb=7.6 * GIB, allocated_mb=1500.0, reserved_mb=1600.0)
    for dtype in ("float32", "bfloat16", "float16"):
        plan = plan_batch(card, dtype, paste_mb=300.0)
        assert plan.budget_mb <= 6000.0                     # "under 6 GB on an 8 GB card"
        assert plan.predicted_peak_mb <= plan.budget_mb
        # the next batch up would not fit: the plan takes what the budget allows
        assert 1500 + 300 + WORKSPACE_MB + (plan.batch + 1) * FRAME_MB[dtype] > plan.budget_mb
    assert plan_batch(card, "bfloat16").batch > plan_batch(card, "float32").batch >= 2
    assert "--batch" not in plan.describe() and "MiB" in plan.describe()


def test_batch_plan_follows_the_per_process_cap_and_free_memory() -> None:
    from engine.device import GpuMemory, plan_batch

    h100 = GpuMemory(total_mb=80 * GIB, free_mb=79 * GIB)
    assert plan_batch(h100, "bfloat16").batch == 32                      # capped at max_batch
    capped = GpuMemory(total_mb=80 * GIB, free_mb=79 * GIB, fraction=0.1)  # acts as an 8 GB card
    eight = GpuMemory(total_mb=8 * GIB, free_mb=8 * GIB)
    assert plan_batch(capped, "bfloat16").batch == plan_batch(eight, "bfloat16").batch
    busy = GpuMemory(total_mb=8 * GIB, free_mb=1.0 * GIB)                # another program holds the card
    assert plan_batch(busy, "bfloat16").batch == 1                       # never 0
    assert plan_batch(busy, "bfloat16").budget_mb <= 1.0 * GIB
    from engine.device import FRAME_MB, WORKSPACE_MB
    assert plan_batch(eight, "float32", budget_mb=2500).batch == (2500 - WORKSPACE_MB) // FRAME_MB["float32"]


def test_batch_plan_entry_points() -> None:
    from engine.device import GpuMemory, auto_batch_size, batch_plan

    assert batch_plan(torch.device("cpu"), 5).reason == "--batch"
    assert batch_plan(torch.device("cpu"), None).batch == 1
    assert batch_plan(torch.device("mps"), None).batch == 4
    fake = GpuMemory(total_mb=8 * GIB, free_mb=8 * GIB)
    assert auto_batch_size(torch.device("cuda"), None, dtype="bfloat16", memory=fake) >= 8
    assert auto_batch_size(torch.device("cuda"), 3, memory=fake) == 3


def test_oom_advice_names_the_batch() -> None:
    from engine.device import oom_advice

    text = oom_advice(torch.device("cuda"), 16)
    assert "batch 16" in text and "--batch 8" in text and "JOYVASA_GPU_MEMORY_MB" in text
    assert "smallest" in oom_advice(torch.device("cuda"), 1)
    assert "host memory" in oom_advice(torch.device("cpu"), 4)


def test_memory_cap_env(monkeypatch) -> None:
    import engine.device as device

    assert device.apply_memory_cap(torch.device("cpu"), {"JOYVASA_GPU_MEMORY_MB": "8192"}) is None
    assert device.apply_memory_cap(torch.device("cuda"), {}) is None
    with pytest.raises(BadRequest):
        device.apply_memory_cap(torch.device("cuda"), {"JOYVASA_GPU_MEMORY_MB": "lots"})
    with pytest.raises(BadRequest):
        device.apply_memory_cap(torch.device("cuda"), {"JOYVASA_GPU_MEMORY_MB": "-1"})
    seen = {}

    class Props:
        total_memory = 80 * 1024**3

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: Props())
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, dev: seen.update(f=f))
    assert device.apply_memory_cap(torch.device("cuda"), {"JOYVASA_GPU_MEMORY_MB": "8192"}) == pytest.approx(0.1)
    assert seen["f"] == pytest.approx(0.1)
