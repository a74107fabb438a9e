"""The batched Otsu threshold as Triton kernels, for CUDA: the same arithmetic as
`mlc.mutual.otsu_threshold_torch` in one to seven launches instead of ~60, which is what its
time is made of on a GPU (a batch has a few hundred objects of a few hundred candidates each).

Per group: numpy's histogram over the group's [min, max] (with numpy's edge corrections), Otsu
on it, and the threshold, or the float below the minimum for a group without spread. A batch of
up to SINGLE_PASS_LIMIT values x groups takes one launch, one program per group that reads every
value and keeps its own; a larger one bins all values at once by scatter (min and max by torch,
then a histogram kernel, then one program per group). Tested against scikit-image in Triton's
interpreter on the CPU (tests/test_otsu_triton.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 1024  # values per block of a program
SINGLE_PASS_LIMIT = 1 << 24  # values x groups up to which one program per group reads all


@triton.jit
def _bin_index(v, lo, hi, bins):
    """numpy's histogram bin of each value (float64) in [lo, hi]."""
    span = tl.where(hi > lo, hi - lo, 1.0)
    step = span / bins
    idx = ((v - lo) * (bins / span)).to(tl.int64)
    idx = tl.minimum(tl.maximum(idx, 0), bins - 1)
    idx -= (v < idx.to(tl.float64) * step + lo).to(tl.int64)
    idx += ((v >= (idx + 1).to(tl.float64) * step + lo) & (idx != bins - 1)).to(tl.int64)
    return tl.minimum(tl.maximum(idx, 0), bins - 1)


@triton.jit
def _bin_centres(i, lo, hi, step, spread, bins):
    """numpy's bin centres: edges lo + i * step, the last edge exactly hi."""
    left = i.to(tl.float64) * step + lo
    right = (i + 1).to(tl.float64) * step + lo
    right = tl.where(i + 1 == bins, tl.where(spread, hi, right), right)
    return (left + right) / 2.0


@triton.jit
def _otsu_of_row(lo_raw, hi_raw, row, bins, BINS: tl.constexpr, F64: tl.constexpr):
    """The threshold of one group from its histogram `row` (int32 counts in global memory)."""
    lo, hi = lo_raw.to(tl.float64), hi_raw.to(tl.float64)
    spread = hi > lo
    step = tl.where(spread, hi - lo, 1.0) / bins
    i = tl.arange(0, BINS)
    # .cg: from L2, where the histogram's atomics landed
    c = tl.load(row + i, mask=i < bins, other=0, cache_modifier=".cg").to(tl.float64)
    c_next = tl.load(row + i + 1, mask=i + 1 < bins, other=0, cache_modifier=".cg").to(tl.float64)
    centre = _bin_centres(i, lo, hi, step, spread, bins)
    weight1 = tl.cumsum(c, 0)
    weight2_next = tl.sum(c, 0) - weight1  # the weight above bin i: integers, exact
    mean1 = tl.cumsum(c * centre, 0) / weight1
    mean2_next = tl.cumsum(c_next * _bin_centres(i + 1, lo, hi, step, spread, bins), 0,
                           reverse=True) / weight2_next
    diff = mean1 - mean2_next
    between = weight1 * weight2_next * (diff * diff)
    # Over a run of empty bins the variance repeats that of the occupied bin before it, whose
    # value numpy's first maximum takes; only occupied bins compete, so that a parallel scan's
    # last-digit differences along such a run cannot move the threshold.
    between = tl.where((i < bins - 1) & (c > 0) & (between == between), between, -1.0)
    best = tl.argmax(between, 0)
    threshold = tl.sum(tl.where(i == best, centre, 0.0), 0)
    # A group without spread: the float just below its minimum; an empty one: NaN.
    if F64:
        bits = lo_raw.to(tl.int64, bitcast=True)
        below = tl.where(lo_raw > 0, bits - 1, tl.where(lo_raw < 0, bits + 1, -9223372036854775807))
        below_min = below.to(tl.float64, bitcast=True)
    else:
        bits = lo_raw.to(tl.int32, bitcast=True)
        below = tl.where(lo_raw > 0, bits - 1, tl.where(lo_raw < 0, bits + 1, -2147483647))
        below_min = below.to(tl.float32, bitcast=True)
    out = tl.where(spread, threshold.to(lo_raw.dtype), below_min)
    return tl.where(hi < lo, hi + lo, out)  # empty: -inf + inf


@triton.jit
def _otsu_group_kernel(v_ptr, g_ptr, counts_ptr, out_ptr, n, bins, BLOCK: tl.constexpr,
                       BINS: tl.constexpr, F64: tl.constexpr):
    """One program per group: its min and max, its histogram, its threshold."""
    gid = tl.program_id(0)
    lo = tl.full([BLOCK], float("inf"), v_ptr.dtype.element_ty)
    hi = tl.full([BLOCK], -float("inf"), v_ptr.dtype.element_ty)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        member = tl.load(g_ptr + offs, mask=offs < n, other=-1) == gid
        v = tl.load(v_ptr + offs, mask=member, other=0)
        lo = tl.where(member, tl.minimum(lo, v), lo)
        hi = tl.where(member, tl.maximum(hi, v), hi)
    lo_raw, hi_raw = tl.min(lo, 0), tl.max(hi, 0)
    row = counts_ptr + gid * bins
    i = tl.arange(0, BINS)
    tl.store(row + i, tl.zeros([BINS], tl.int32), mask=i < bins)
    tl.debug_barrier()
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        member = tl.load(g_ptr + offs, mask=offs < n, other=-1) == gid
        v = tl.load(v_ptr + offs, mask=member, other=0).to(tl.float64)
        idx = _bin_index(v, lo_raw.to(tl.float64), hi_raw.to(tl.float64), bins)
        tl.atomic_add(row + idx, 1, mask=member)
    tl.debug_barrier()
    tl.store(out_ptr + gid, _otsu_of_row(lo_raw, hi_raw, row, bins, BINS, F64))


@triton.jit
def _histogram_kernel(v_ptr, g_ptr, lo_ptr, hi_ptr, counts_ptr, n, bins, BLOCK: tl.constexpr):
    """Every value into its group's histogram, by scatter."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    v = tl.load(v_ptr + offs, mask=mask, other=0).to(tl.float64)
    g = tl.load(g_ptr + offs, mask=mask, other=0)
    lo = tl.load(lo_ptr + g, mask=mask, other=0).to(tl.float64)
    hi = tl.load(hi_ptr + g, mask=mask, other=1).to(tl.float64)
    tl.atomic_add(counts_ptr + g * bins + _bin_index(v, lo, hi, bins), 1, mask=mask)


@triton.jit
def _otsu_kernel(lo_ptr, hi_ptr, counts_ptr, out_ptr, bins, BINS: tl.constexpr, F64: tl.constexpr):
    """One program per group: its threshold from its histogram."""
    gid = tl.program_id(0)
    out = _otsu_of_row(tl.load(lo_ptr + gid), tl.load(hi_ptr + gid), counts_ptr + gid * bins,
                       bins, BINS, F64)
    tl.store(out_ptr + gid, out)


@torch.no_grad()
def otsu_threshold_triton(values: Tensor, group_ids: Tensor, num_groups: int, bins: int = 256) -> Tensor:
    """`mlc.mutual.otsu_threshold` for float32 or float64 values on a Triton device."""
    if values.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"otsu_threshold_triton takes float32 or float64 values, got {values.dtype}")
    v = values.detach().reshape(-1).contiguous()
    g = group_ids.reshape(-1).long().contiguous()
    out = torch.empty(num_groups, dtype=v.dtype, device=v.device)
    if num_groups == 0:
        return out
    shape = {"BINS": triton.next_power_of_2(bins), "F64": v.dtype == torch.float64,
             "enable_fp_fusion": False}
    if v.numel() * num_groups <= SINGLE_PASS_LIMIT:
        counts = torch.empty(num_groups * bins, dtype=torch.int32, device=v.device)
        _otsu_group_kernel[(num_groups,)](v, g, counts, out, v.numel(), bins, BLOCK=BLOCK, **shape)
        return out
    lo = torch.full((num_groups,), float("inf"), dtype=v.dtype, device=v.device)
    lo.scatter_reduce_(0, g, v, "amin")
    hi = torch.full((num_groups,), -float("inf"), dtype=v.dtype, device=v.device)
    hi.scatter_reduce_(0, g, v, "amax")
    counts = torch.zeros(num_groups * bins, dtype=torch.int32, device=v.device)
    _histogram_kernel[(triton.cdiv(v.numel(), BLOCK),)](
        v, g, lo, hi, counts, v.numel(), bins, BLOCK=BLOCK, enable_fp_fusion=False)
    _otsu_kernel[(num_groups,)](lo, hi, counts, out, bins, **shape)
    return out
