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
