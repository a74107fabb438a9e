"""One CPU kernel level (mlc.util.cpu): the pin, how the level is read, and the refusal of a
CPU run at another level on a machine that could run the pinned one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlc.util import cpu


def test_this_test_process_runs_at_the_pinned_level(exact_kernels):
    level = cpu.check()
    if exact_kernels:
        assert cpu.is_pinned(level)
    assert level["cpu_model"] and level["kernels"] == ("pinned" if exact_kernels else "native")


def test_pin_sets_both_variables_unless_opted_out_or_impossible(monkeypatch):
    for key in (*cpu.PIN_ENV, cpu.OPT_OUT):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(cpu, "unpinnable_reason", lambda: None)
    cpu.pin()
    assert {k: os.environ[k] for k in cpu.PIN_ENV} == {
        "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    for key in cpu.PIN_ENV:
        monkeypatch.delenv(key)
    monkeypatch.setenv(cpu.OPT_OUT, "native")
    cpu.pin()
    assert not set(cpu.PIN_ENV) & set(os.environ)
    monkeypatch.delenv(cpu.OPT_OUT)
    monkeypatch.setattr(cpu, "unpinnable_reason", lambda: "the CPU is not x86-64 (arm64)")
    cpu.pin()
    assert not set(cpu.PIN_ENV) & set(os.environ)


def test_a_machine_without_avx2_or_x86_cannot_be_pinned(monkeypatch):
    monkeypatch.setattr(cpu.platform, "machine", lambda: "aarch64")
    assert "not x86-64" in cpu.unpinnable_reason()
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"sse4_1", "avx"})
    assert cpu.unpinnable_reason() == "the CPU has no AVX2"
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"avx", "avx2", "avx512f"})
    assert cpu.unpinnable_reason() is None


@pytest.mark.parametrize("text, isa", [
    ("onednn_verbose,v1,info,cpu,isa:Intel AVX2\n", "AVX2"),
    ("onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions",
     "AVX512"),
    ("onednn_verbose,v1,info,cpu,isa:Intel AVX10.1 and Intel AMX with bfloat16 and 8-bit integer "
     "support", "AVX512_AMX"),
    ("onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx512_core,forward_training,src:f32",
     "AVX512"),
    ("onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,forward_training,src:f32", "AVX2"),
    ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) "
     "Advanced Vector Extensions 2 (Intel(R) AVX2) enabled processors, Lnx 2.10GHz", "unknown"),
    ("nothing from oneDNN", "unknown"),
])
def test_the_onednn_level_is_read_from_its_verbose_output(text, isa):
    assert cpu.isa_from_verbose(text) == isa


@pytest.mark.parametrize("header, isa", [
    ("for Intel(R) 64 architecture Intel(R) Advanced Vector Extensions 2 (Intel(R) AVX2) enabled "
     "processors", "AVX2"),
    ("Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) with support for INT8, BF16, FP16 "
     "(limited) instructions, and Intel(R) Advanced Matrix Extensions (Intel(R) AMX)", "AVX512_AMX"),
    ("Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) enabled processors", "AVX512"),
    ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) "
     "Architecture processors, Lnx 2.60GHz lp64 gnu_thread", "unknown"),  # MKL on an AMD EPYC
])
def test_library_headers_name_their_level(header, isa):
    assert cpu._level_named(header) == isa


def _off_level(monkeypatch):
    monkeypatch.setattr(cpu, "level", lambda: {"cpu_model": "test", "aten_capability": "AVX512",
                                               "onednn_isa": "AVX512", "mkl_isa": "AVX2",
                                               "kernels": "pinned"})


def test_another_level_is_refused_where_the_pinned_one_could_run(monkeypatch):
    _off_level(monkeypatch)
    monkeypatch.delenv(cpu.OPT_OUT, raising=False)
    monkeypatch.setattr(cpu, "unpinnable_reason", lambda: None)
    with pytest.raises(cpu.KernelLevelError, match="at ATen AVX512, oneDNN AVX512 in .*made at AVX2"):
        cpu.check()


def test_opting_out_or_a_machine_that_cannot_pin_warns_instead(monkeypatch):
    _off_level(monkeypatch)
    monkeypatch.setattr(cpu, "unpinnable_reason", lambda: None)
    monkeypatch.setenv(cpu.OPT_OUT, "native")
    with pytest.warns(UserWarning, match="MLC_CPU_KERNELS=native"):
        assert cpu.check()["aten_capability"] == "AVX512"
    monkeypatch.delenv(cpu.OPT_OUT)
    monkeypatch.setattr(cpu, "unpinnable_reason", lambda: "the CPU has no AVX2")
    with pytest.warns(UserWarning, match="the CPU has no AVX2"):
        cpu.check()


def test_training_after_torch_ran_at_another_level_is_refused_before_any_work(tmp_path):
    """A script that used torch before mlc, in an environment asking for other kernels: the
    run is refused with the fix named, and nothing is written."""
    if cpu.unpinnable_reason():
        pytest.skip(f"the refusal is for machines that can run the pinned level: "
                    f"{cpu.unpinnable_reason()}")
    script = ("import torch; torch.ones(4).sum()\n"
              "from mlc.config import make_config\nfrom mlc.runs import get_or_train\n"
              "get_or_train(make_config('fcos_minus', 'smoke'), progress=False)\n")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "MLC_RUNS": str(tmp_path / "runs"),
           "MLC_RESULTS": str(tmp_path / "results")}
    env.pop(cpu.OPT_OUT, None)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode != 0
    assert "KernelLevelError: torch runs its CPU kernels at ATen DEFAULT" in res.stderr
    assert "python -m mlc" in res.stderr and not (tmp_path / "runs").exists()
