"""The doctor's device line: a real op on this machine's CPU, and the GPU cases with faked probes
(no GPU here: the CUDA/MPS branches that need a device are not exercised)."""
from __future__ import annotations

import json

import torch

from engine import accelerator as acc

SMI_L = "GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-1234)\nGPU 1: NVIDIA RTX A2000 (UUID: GPU-5678)\n"


def test_nvidia_gpus_parsed_from_nvidia_smi():
    asked = []
    names = acc.nvidia_gpus(lambda argv: asked.append(argv) or SMI_L)
    assert names == ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A2000"] and asked == [["nvidia-smi", "-L"]]
    assert acc.nvidia_gpus(lambda argv: None) == []


def test_probe_op_runs_on_cpu():
    assert acc.probe_op(torch.device("cpu")) is None


def test_cpu_torch_on_an_nvidia_machine_is_a_warning_with_the_fix():
    got = acc.device_in_use(torch.device("cpu"), gpus=["NVIDIA GeForce RTX 4090"], torch_cuda="")
    assert got.warning and got.device == "cpu"
    assert got.line.startswith("CPU only: your torch build") and "has no CUDA although an NVIDIA GPU is present" in got.line
    assert "RTX 4090" in got.line and "Create Engine Environment" in got.line


def test_cuda_torch_that_cannot_see_the_gpu_names_the_driver():
    got = acc.device_in_use(torch.device("cpu"), gpus=["NVIDIA GeForce RTX 4090"], torch_cuda="12.8")
    assert got.warning and "update the NVIDIA driver" in got.line and "CUDA 12.8" in got.line


def test_no_gpu_is_plain_cpu():
    got = acc.device_in_use(torch.device("cpu"), gpus=[], torch_cuda="")
    assert not got.warning and got.line.startswith("CPU only: no GPU found")


def test_doctor_reports_the_device_line(capsys, monkeypatch):
    """This machine (no GPU): ``doctor --json`` carries the line; with a faked nvidia-smi it warns
    and the warning is one of the next steps."""
    from engine.cli import main

    monkeypatch.setattr(acc, "_run", lambda argv: None)          # no nvidia-smi
    main(["doctor", "--no-load", "--json"])
    d = json.loads(capsys.readouterr().out)["devices"]
    expect = "GPU in use: " if torch.cuda.is_available() else "CPU only: no GPU found"
    assert d["in_use"].startswith(expect) and d["gpu_warning"] is False
    monkeypatch.setattr(acc, "_run", lambda argv: SMI_L)          # an NVIDIA GPU, and a torch without CUDA
    monkeypatch.setattr(acc, "probe_op", lambda device: None)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    main(["doctor", "--no-load", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["devices"]["gpu_warning"] is True
    assert any("has no CUDA although an NVIDIA GPU is present" in line for line in report["next"])
    main(["doctor", "--no-load"])
    assert "device: CPU only: your torch build" in capsys.readouterr().out


def _auto_precision_text() -> str:
    """The add-on's Precision > Auto description (prefs.py imports bpy, so it is read, not imported)."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "joyvasa_blender" / "prefs.py"
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "DTYPES" for t in node.targets):
            return next(ast.literal_eval(e)[2] for e in node.value.elts if ast.literal_eval(e)[0] == "auto")
    raise AssertionError("DTYPES not found in prefs.py")


def test_precision_auto_text_says_what_the_engine_does(monkeypatch):
    """Each clause of the preference's Auto text against engine/device.py's decision (faked cards)."""
    from engine import device as dev

    text = _auto_precision_text()
    monkeypatch.setattr(dev, "cuda_capability", lambda d: (8, 6))
    assert dev.select_precision(torch.device("cuda"), "auto").name == "bfloat16"
    assert "bf16 on NVIDIA Ampere or newer" in text
    monkeypatch.setattr(dev, "cuda_capability", lambda d: (7, 5))
    assert dev.select_precision(torch.device("cuda"), "auto").name == "float16"
    assert dev.select_precision(torch.device("mps"), "auto").name == "float16"
    assert "fp16 on older NVIDIA GPUs and on Apple MPS" in text
    assert dev.select_precision(torch.device("cpu"), "auto").name == "float32" and "fp32 on CPU" in text
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: False)
    assert dev.select_motion_precision(torch.device("cuda"), "auto", "dpmpp_2m").name == "float32"
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: True)
    assert dev.select_motion_precision(torch.device("cpu"), "auto", "ancestral").name == "float32"
    assert dev.select_motion_precision(torch.device("cpu"), "auto", "dpmpp_2m").name == "bfloat16"
    assert "motion in fp32 (bf16 on CPUs with bf16 instructions when a fast sampler is used)" in text
