"""FlatLayout: chunk-aligned placement, the one-pass per-group reductions and the fused combine."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradremedy.surgery import FlatLayout
from gradremedy.surgery.grouping import group_ids_for

shape_lists = st.lists(st.lists(st.integers(0, 9), min_size=0, max_size=3), min_size=1, max_size=8)


def filled(layout: FlatLayout, main: list, aux: list) -> torch.Tensor:
    buffer = layout.new_buffer(2)
    for row, grads in ((0, aux), (1, main)):
        for view, grad in zip(layout.views(buffer[row]), grads):
            view.copy_(grad)
    return buffer


@settings(max_examples=40, deadline=None)
@given(
    shapes=shape_lists,
    granularity=st.sampled_from(["tensor", "global", "layer"]),
    chunk=st.sampled_from([None, 16, 32]),
    block=st.sampled_from([16, 64, 1 << 18]),
    seed=st.integers(0, 1000),
)
def test_reductions_and_combine_match_direct_computation(shapes, granularity, chunk, block, seed) -> None:
    shapes = [torch.Size(s) for s in shapes]
    g = torch.Generator().manual_seed(seed)
    groups = [i % 3 for i in range(len(shapes))] if granularity == "layer" else None
    ids = group_ids_for(shapes, granularity, groups)
    layout = FlatLayout(shapes, ids, chunk=chunk)
    layout.block_elements = block  # several float64 blocks, the last one partial
    main = [torch.randn(s, generator=g) for s in shapes]
    aux = [torch.randn(s, generator=g) for s in shapes]
    buffer = filled(layout, main, aux)
    assert layout.padded % layout.chunk == 0
    assert layout.num_chunks == layout.padded // layout.chunk
    stats = layout.reduce(buffer)
    for gid in range(layout.num_groups):
        s = torch.cat([t.flatten() for t, i in zip(aux, ids) if i == gid]).double()
        a = torch.cat([t.flatten() for t, i in zip(main, ids) if i == gid]).double()
        assert float(stats.ss[gid]) == pytest.approx(float(s @ s), rel=1e-6, abs=1e-9)
        assert float(stats.aa[gid]) == pytest.approx(float(a @ a), rel=1e-6, abs=1e-9)
        assert float(stats.sa[gid]) == pytest.approx(float(s @ a), rel=1e-5, abs=1e-5)
    A = torch.arange(layout.num_groups, dtype=torch.float64) + 0.5
    B = -2 * torch.arange(layout.num_groups, dtype=torch.float64) + 1.0
    out = torch.full((layout.padded,), float("nan"))
    layout.combine(buffer, A, B, out)
    for view, s, a, gid in zip(layout.views(out), aux, main, ids):
        torch.testing.assert_close(view, float(A[gid]) * s + float(B[gid]) * a)
    layout.combine(buffer, A, B, out, accumulate=True)
    for view, s, a, gid in zip(layout.views(out), aux, main, ids):
        torch.testing.assert_close(view, 2 * (float(A[gid]) * s + float(B[gid]) * a))


def test_groups_are_chunk_aligned_and_padding_stays_zero() -> None:
    shapes = [torch.Size([5]), torch.Size([3, 3]), torch.Size([40])]
    layout = FlatLayout(shapes, group_ids_for(shapes, "layer", ["a", "b", "a"]), chunk=16)
    assert layout.num_groups == 2
    # Group "a" = tensors 0 and 2 (45 elements -> 3 chunks), then group "b" (9 -> 1 chunk).
    assert layout.offsets == [0, 48, 5]
    assert layout.chunk_group.tolist() == [0, 0, 0, 1]
    assert [s.start for s in layout.group_slices] == [0, 48]
    buffer = filled(layout, [torch.ones(s) for s in shapes], [torch.ones(s) for s in shapes])
    assert float(buffer.sum()) == 2 * sum(math.prod(s) for s in shapes)


def test_default_chunk_fits_small_models() -> None:
    layout = FlatLayout([torch.Size([3]), torch.Size([20])], [0, 1])
    assert layout.chunk == 32
    big = FlatLayout([torch.Size([5000])], [0])
    assert big.chunk == 1024


def test_float64_extremes_and_non_finite() -> None:
    shapes = [torch.Size([4]), torch.Size([4])]
    layout = FlatLayout(shapes, [0, 1])
    s = [torch.full((4,), 1e30), torch.tensor([1.0, float("inf"), 0.0, 0.0])]
    a = [torch.full((4,), 1e-30), torch.ones(4)]
    stats = layout.reduce(filled(layout, a, s))
    assert float(stats.ss[0]) == pytest.approx(4e60, rel=1e-6)  # beyond float32, exact in float64
    assert float(stats.aa[0]) == pytest.approx(4e-60, rel=1e-6)
    assert bool(stats.usable[0]) is False  # |a| / |s| = 1e-60: a is negligible
    assert bool(stats.finite[1]) is False and bool(stats.usable[1]) is False
