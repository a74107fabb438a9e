"""One CPU kernel level for every process that trains or evaluates on the CPU.

torch's CPU kernels come from ATen, oneDNN (convolutions) and MKL (matrix products), and each
picks its code by the CPU's vector ISA; AVX2 and AVX-512 code rounds differently in the last
bits, and on the `shapes` set such a difference moved one run's AR100 by 0.7. The committed
results were made at AVX2, so on x86-64 every process runs all three at AVX2: `pin()` sets
their variables (inherited by workers, torchrun jobs and notebook kernels), which take effect
only if set before torch runs its first kernel, and `check()` reads the levels torch really runs
at and refuses a CPU run at another one. (The same level is not always the same bits: oneDNN and
MKL also block by the CPU's cache sizes; `mlc.provenance.kernel_fingerprint` tells machines apart.)

MLC_CPU_KERNELS=native leaves torch's own choice; such a run is warned about and its level is in
its record's provenance, as on a machine that cannot run AVX2 (not x86-64, or too old).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import re
import sys
import tempfile
import warnings
from pathlib import Path

PINNED = "AVX2"  # the level the committed results were made at, for ATen, oneDNN and MKL alike
PIN_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
           "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
LIBRARIES = {"ATen": "aten_capability", "oneDNN": "onednn_isa", "MKL": "mkl_isa"}
OPT_OUT = "MLC_CPU_KERNELS"  # "native": run at the machine's own level


class KernelLevelError(RuntimeError):
    """A CPU run would use other kernels than the pinned level; the message says how to fix it."""


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_model() -> str:
    """The CPU's model name, e.g. 'Intel(R) Xeon(R) Processor' ('unknown' if not told)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def unpinnable_reason() -> str | None:
    """Why this machine cannot run the pinned level, or None when it can."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the CPU is not x86-64 ({platform.machine()}), so AVX2 kernels do not exist here"
    flags = cpu_flags()
    if flags and "avx2" not in flags:
        return "the CPU has no AVX2"
    return None


def opted_out() -> bool:
    """True when the user asked for the machine's own kernels (MLC_CPU_KERNELS=native)."""
    return os.environ.get(OPT_OUT, "").lower() == "native"


def pin() -> None:
    """Set the pinned level in this process's environment, unless the user opted out or the
    machine cannot run it. Call before torch runs its first kernel; subprocesses inherit it."""
    if not opted_out() and unpinnable_reason() is None:
        os.environ.update(PIN_ENV)


def _capture_stdout(fn) -> str:
    """What `fn()` writes to file descriptor 1, C libraries' output included."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as out:
        os.dup2(out.fileno(), 1)
        try:
            fn()
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        out.seek(0)
        return out.read().decode(errors="replace")


@functools.cache
def onednn_isa() -> str:
    """The vector ISA oneDNN's kernels use in this process: 'AVX2', 'AVX512', ... ('unknown' if
    oneDNN is absent or does not say). Read from oneDNN's verbose output for one convolution."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return "unknown"

    def convolve() -> None:
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            torch.nn.functional.conv2d(torch.ones(2, 16, 16, 16), torch.ones(16, 16, 3, 3))

    try:
        return isa_from_verbose(_capture_stdout(convolve))
    except OSError:
        return "unknown"


@functools.cache
def mkl_isa() -> str:
    """The vector ISA MKL's kernels use in this process ('unknown' if MKL is absent or does not
    say), from the header of its verbose output for one matrix product."""
    import torch

    if not torch.backends.mkl.is_available():
        return "unknown"

    def multiply() -> None:
        with torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
            torch.ones(64, 64) @ torch.ones(64, 64)

    try:
        header = re.search(r"MKL_VERBOSE oneMKL.*", _capture_stdout(multiply))
    except OSError:
        return "unknown"
    return _level_named(header.group(0)) if header else "unknown"


def _level_named(text: str) -> str:
    """The level a library's header names, or 'unknown' when it names none (MKL on an AMD CPU
    says only "Intel(R) Architecture processors")."""
    for named, level in (("AMX", "AVX512_AMX"), ("AVX10", "AVX512"), ("AVX-512", "AVX512"),
                         ("AVX512", "AVX512"), ("AVX2", "AVX2"), ("AVX", "AVX"),
                         ("SSE4", "SSE4")):
        if named in text:
            return level
    return "unknown"


def isa_from_verbose(text: str) -> str:
    """The ISA level named in oneDNN's verbose output: its header ("isa:Intel AVX2"), or if
    another caller already printed that, a convolution's implementation ("jit:avx512_core")."""
    header = re.search(r"info,cpu,isa:(.*)", text)
    if header:
        return _level_named(header.group(1))
    impl = re.search(r"convolution,(?:jit|brg)\w*:(\w+)", text)
    if impl:
        name = impl.group(1).lower()
        return "AVX512" if "avx512" in name else name.upper().split("_")[0]
    return "unknown"


def level() -> dict:
    """The CPU and the kernel levels this process runs at, for a run's provenance."""
    import torch

    return {"cpu_model": cpu_model(), "aten_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_isa": onednn_isa(), "mkl_isa": mkl_isa(),
            "kernels": "native" if opted_out() or unpinnable_reason() else "pinned"}


def is_pinned(level: dict) -> bool:
    """True when a `level()` (or a record's provenance) shows ATen and oneDNN at the pinned
    level, and MKL too where it names its level (on a CPU not made by Intel it names none)."""
    return (level["aten_capability"], level["onednn_isa"]) == (PINNED, PINNED) \
        and level["mkl_isa"] in (PINNED, "unknown")


def check() -> dict:
    """The level of this process (as `level()`); raises KernelLevelError if this machine can
    run the pinned level but this process does not, unless the user opted out (then a warning)."""
    current = level()
    off = [f"{lib} {current[key]}" for lib, key in LIBRARIES.items()
           if current[key] not in (PINNED, "unknown")]
    if not off:
        return current
    reason = unpinnable_reason()
    if reason or opted_out():
        why = reason or f"{OPT_OUT}=native"
        warnings.warn(f"CPU kernels run at {', '.join(off)} ({why}); the committed results were "
                      f"made at {PINNED}, so this run's numbers can differ from theirs in the last "
                      "bits and, through training, by more. The level is in the run's provenance.",
                      stacklevel=2)
        return current
    raise KernelLevelError(
        f"torch runs its CPU kernels at {', '.join(off)} in this process, but results are made at "
        f"{PINNED}: torch ran a kernel before the level could be pinned. Start through "
        "`python -m mlc`, call mlc.util.cpu.pin() before torch is used, or set "
        f"{' '.join(f'{k}={v}' for k, v in PIN_ENV.items())} in the environment; "
        f"{OPT_OUT}=native trains at this machine's own level on purpose.")
