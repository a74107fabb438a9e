"""The CUDA path of the Otsu threshold (Triton kernels, `mlc.kernels`) run in Triton's
interpreter on the CPU, against scikit-image and the torch-ops version, and on a GPU where one is."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("triton")

CHECK = textwrap.dedent("""
    import numpy as np, torch
    from skimage.filters import threshold_otsu
    import mlc.kernels
    from mlc.kernels import otsu_threshold_triton
    from mlc.mutual import otsu_threshold_torch

    rng = np.random.default_rng(0)
    cases = 0
    for trial in range(30):
        sizes = rng.integers(1, 60, rng.integers(1, 12))
        bins = (2, 16, 256)[trial % 3]
        values = [rng.random(n) * rng.uniform(0.01, 10) + rng.uniform(-5, 5) for n in sizes]
        if trial % 2:  # many ties, as scores and IoUs have
            values = [np.round(v * 100) / 100 for v in values]
        ids = np.concatenate([np.full(n, g) for g, n in enumerate(sizes)])
        order = rng.permutation(len(ids))
        values, ids = np.concatenate(values)[order], ids[order]
        for dtype in (np.float64, np.float32):
            # one program per group reading every value, or the scatter path
            mlc.kernels.SINGLE_PASS_LIMIT = 0 if dtype == np.float32 and trial % 4 < 2 else 1 << 24
            v = values.astype(dtype)
            out = otsu_threshold_triton(torch.from_numpy(v), torch.from_numpy(ids), len(sizes) + 1, bins)
            ref = otsu_threshold_torch(torch.from_numpy(v), torch.from_numpy(ids), len(sizes) + 1, bins)
            assert out.dtype == ref.dtype and torch.equal(out[:-1], ref[:-1]), (trial, out, ref)
            assert torch.isnan(out[-1])  # an empty group
            for g in range(len(sizes)):
                member = v[ids == g].astype(np.float64)
                if np.unique(member).size >= 2:
                    assert out[g].item() == dtype(threshold_otsu(member, nbins=bins)), (trial, g)
                else:
                    assert out[g].item() < member.min() and out[g].item() == np.nextafter(
                        dtype(member.min()), dtype(-np.inf))
                cases += 1
    print("groups checked:", cases)
""")


def test_triton_otsu_in_the_interpreter_equals_skimage():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split(":")[-1]) > 300


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_otsu_on_cuda_equals_the_cpu():
    from mlc.mutual import otsu_threshold

    g = torch.Generator().manual_seed(0)
    values = (torch.rand(20000, generator=g) * 100).round() / 100
    ids = torch.randperm(20000, generator=g) % 100
    assert torch.equal(otsu_threshold(values.cuda(), ids.cuda(), 101).cpu(),
                       otsu_threshold(values, ids, 101))
