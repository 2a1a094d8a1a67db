"""Create Engine Environment's torch choice and pip command lines, for faked platforms and probes
(no GPU here: every platform path below is exercised with fakes only)."""
from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

from joyvasa_blender.core import engine_client as ec
from joyvasa_blender.core import torch_build as tb

QUERY_4090 = "NVIDIA GeForce RTX 4090, 572.16\n"
HEADER_128 = """+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 572.16                 Driver Version: 572.16         CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+"""


def fake_run(outputs: dict[str, str | None]):
    """A probe runner answering by the command's first words; records what was asked."""
    asked: list[list[str]] = []

    def run(argv):
        asked.append(list(argv))
        key = " ".join(argv[:2]) if len(argv) > 1 else argv[0]
        return outputs.get(key, outputs.get(argv[0]))
    run.asked = asked
    return run


def test_parse_nvidia_smi():
    info = tb.parse_nvidia_smi(QUERY_4090 + "NVIDIA RTX A2000, 572.16\n", HEADER_128)
    assert info == tb.NvidiaInfo(("NVIDIA GeForce RTX 4090", "NVIDIA RTX A2000"), "572.16", (12, 8))
    assert tb.parse_nvidia_smi("", HEADER_128) is None
    assert tb.parse_nvidia_smi(QUERY_4090, None).cuda is None


def test_probe_nvidia_without_torch():
    run = fake_run({"nvidia-smi --query-gpu=name,driver_version": QUERY_4090, "nvidia-smi": HEADER_128})
    assert tb.probe_nvidia(run).cuda == (12, 8)
    assert run.asked[0][0] == "nvidia-smi"
    assert tb.probe_nvidia(fake_run({})) is None            # nvidia-smi missing or failing
    tree = ast.parse(Path(tb.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"torch", "bpy"}, imported


def test_probe_rocm(tmp_path):
    assert tb.probe_rocm(fake_run({}), root=tmp_path) is True        # /opt/rocm exists
    missing = tmp_path / "no-rocm"
    assert tb.probe_rocm(fake_run({"rocminfo": "  Name: gfx1100\n"}), root=missing) is True
    assert tb.probe_rocm(fake_run({"rocminfo": "  Name: AMD Ryzen CPU\n"}), root=missing) is False
    assert tb.probe_rocm(fake_run({}), root=missing) is False


@pytest.mark.parametrize("cuda, tag", [((13, 1), "cu130"), ((12, 9), "cu128"), ((12, 8), "cu128"),
                                       ((12, 6), "cu126"), ((12, 2), "cu126"), ((11, 8), None), (None, "cu126")])
def test_cuda_build_for_driver(cuda, tag):
    assert tb.cuda_build_for(cuda) == tag


WIN_NV = tb.Machine("Windows", "AMD64", tb.NvidiaInfo(("NVIDIA GeForce RTX 4070",), "566.36", (12, 7)))
LINUX_NV = tb.Machine("Linux", "x86_64", tb.NvidiaInfo(("NVIDIA H100 80GB HBM3",), "580.65", (13, 0)))
LINUX_ROCM = tb.Machine("Linux", "x86_64", None, rocm=True)
MAC_ARM = tb.Machine("Darwin", "arm64")
LINUX_CPU = tb.Machine("Linux", "x86_64")
WIN_CPU = tb.Machine("Windows", "AMD64")
OLD_DRIVER = tb.Machine("Linux", "x86_64", tb.NvidiaInfo(("Tesla K80",), "470.82", (11, 4)))


@pytest.mark.parametrize("machine, build, url", [
    (WIN_NV, "cuda", "https://download.pytorch.org/whl/cu126"),
    (LINUX_NV, "cuda", "https://download.pytorch.org/whl/cu130"),
    (LINUX_ROCM, "rocm", "https://download.pytorch.org/whl/rocm6.4"),
    (MAC_ARM, "default", None),
    (LINUX_CPU, "cpu", "https://download.pytorch.org/whl/cpu"),
    (WIN_CPU, "cpu", "https://download.pytorch.org/whl/cpu"),
    (OLD_DRIVER, "cpu", "https://download.pytorch.org/whl/cpu"),
])
def test_auto_choice_per_platform(machine, build, url):
    c = tb.choose(machine, "auto")
    assert (c.build, c.index_url) == (build, url)
    assert c.reason and c.reason in c.summary


def test_choice_reasons_name_the_gpu_and_the_fix():
    assert "NVIDIA GeForce RTX 4070" in tb.choose(WIN_NV).reason and "CUDA 12.7" in tb.choose(WIN_NV).reason
    assert "update the NVIDIA driver" in tb.choose(OLD_DRIVER).reason
    assert "MPS" in tb.choose(MAC_ARM).reason


@pytest.mark.parametrize("pref, build, url", [
    ("cpu", "cpu", "https://download.pytorch.org/whl/cpu"),
    ("cuda", "cuda", "https://download.pytorch.org/whl/cu126"),   # no GPU detected: the most compatible build
    ("rocm", "rocm", "https://download.pytorch.org/whl/rocm6.4"),
    ("default", "default", None),
])
def test_preference_overrides_auto(pref, build, url):
    c = tb.choose(LINUX_CPU, pref)
    assert (c.build, c.index_url) == (build, url) and "preference" in c.reason
    assert tb.choose(WIN_NV, "cpu").build == "cpu"          # a GPU machine can still ask for CPU


def test_unknown_preference_is_an_error():
    with pytest.raises(ValueError, match="unknown torch build 'tpu'"):
        tb.choose(LINUX_CPU, "tpu")


def test_every_preference_choice_is_handled():
    for ident, _label, _desc in tb.BUILD_CHOICES:
        assert tb.choose(LINUX_NV, ident).build in ("cuda", "rocm", "cpu", "default")


@pytest.fixture()
def req(tmp_path) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("torch>=2.2\ntransformers>=4.39\nnumpy>=1.24\n")
    return path


def test_torch_requirement(tmp_path):
    path = tmp_path / "r.txt"
    for text, want in (("torch >= 2.2  # CPU here\nnumpy\n", "torch>=2.2"), ("torchvision\ntorch\n", "torch"),
                       ("torchaudio>=2\n# torch\n", None), ("", None)):
        path.write_text(text)
        assert tb.torch_requirement(path) == want, text


def test_install_command_lines_windows_nvidia(req):
    venv = Path("C:/Users/a/AppData/Roaming/Blender/extensions/.user/user_default/joyvasa_blender/venv")
    steps = tb.install_steps("C:/Blender/python.exe", venv, req, tb.choose(WIN_NV),
                             venv_py=venv / "Scripts/python.exe")
    py = str(venv / "Scripts/python.exe")
    assert [argv for _l, argv in steps] == [
        ["C:/Blender/python.exe", "-m", "venv", "--clear", str(venv)],
        [py, "-m", "pip", "install", "--progress-bar", "off", "torch>=2.2", "--index-url",
         "https://download.pytorch.org/whl/cu126"],
        [py, "-m", "pip", "install", "--progress-bar", "off", "-r", str(req)],
    ]
    assert "cu126" in steps[1][0]


@pytest.mark.parametrize("machine, torch_args", [
    (LINUX_NV, ["torch>=2.2", "--index-url", "https://download.pytorch.org/whl/cu130"]),
    (LINUX_ROCM, ["torch>=2.2", "--index-url", "https://download.pytorch.org/whl/rocm6.4"]),
    (MAC_ARM, ["torch>=2.2"]),
    (LINUX_CPU, ["torch>=2.2", "--index-url", "https://download.pytorch.org/whl/cpu"]),
])
def test_install_command_lines_posix(tmp_path, req, machine, torch_args):
    steps = tb.install_steps("/usr/bin/python3", tmp_path / "venv", req, tb.choose(machine))
    py = str(ec.venv_python(tmp_path / "venv"))
    assert steps[1][1] == [py, "-m", "pip", "install", "--progress-bar", "off", *torch_args]
    assert steps[2][1][-2:] == ["-r", str(req)]
    text = tb.command_text(steps[1][1])
    assert text.startswith(py) and " ".join(torch_args).replace("torch>=2.2", "'torch>=2.2'") in text


def test_no_torch_step_when_the_requirements_need_none(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("# nothing\n")
    steps = tb.install_steps("/usr/bin/python3", tmp_path / "venv", path, tb.choose(LINUX_NV))
    assert [label for label, _ in steps] == ["Creating virtual environment", "Installing engine requirements"]


def test_venv_step_creates_a_venv(tmp_path, req):
    """The first step really runs (no network); the pip steps need PyTorch's index, unreachable here."""
    steps = tb.install_steps(sys.executable, tmp_path / "venv", req, tb.choose(LINUX_CPU))
    r = ec.StepRunner(steps[:1]).start()
    r.join(120)
    assert r.error is None and ec.venv_python(tmp_path / "venv").exists()


def test_probe_runs_a_real_nvidia_smi_on_path(tmp_path, monkeypatch):
    """The default runner: an executable ``nvidia-smi`` found on PATH, its two outputs parsed."""
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\nif [ \"$1\" = \"--query-gpu=name,driver_version\" ]; then\n"
                      f"  printf '{QUERY_4090.strip()}\\n'\nelse\n  echo '| Driver Version: 572.16   CUDA Version: 12.8 |'\nfi\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    info = tb.probe_nvidia()
    assert info == tb.NvidiaInfo(("NVIDIA GeForce RTX 4090",), "572.16", (12, 8))
    assert tb.choose(tb.Machine("Linux", "x86_64", info)).index_url == "https://download.pytorch.org/whl/cu128"
    script.write_text("#!/bin/sh\nexit 9\n")                 # a broken driver: no GPU, no exception
    assert tb.probe_nvidia() is None
