"""Per-group reductions and the fused combine, shared by every two-task method.

A *group* is a set of shared parameters that a method treats as one vector: one tensor
(``granularity="tensor"``), one layer (``"layer"``) or all shared parameters (``"global"``).
For every group a two-task method needs three numbers of the auxiliary gradient ``s`` and the main
gradient ``a``: ``|s|^2``, ``|a|^2`` and ``<s, a>``; its result is always ``A * s + B * a`` with two
per-group scalars.

:class:`FlatLayout` places the tensors group by group in one flat buffer of shape ``(2, padded)``
(row 0: ``s``, row 1: ``a``) and pads every group to a whole number of fixed-size chunks. Then both
steps are batched matrix products over all chunks at once, whatever the number of groups:

* reduce:  ``X_c @ X_c^T`` for every chunk ``X_c`` (2, C) gives its 2x2 Gram matrix in ONE read of
  the data (the three reductions fused), and an ``index_add`` sums the chunk Grams of each group.
  The buffer is streamed through a float64 scratch block (a few MiB on a CPU: the cache), so the
  only loop is over memory blocks, never over parameters;
* combine: ``[A_g, B_g] @ X_c`` writes ``A*s + B*a`` for every chunk in one read and one write.

No Python loop over parameters and no device-to-host synchronisation. The reductions are done in
float64, so every finite float32 gradient, 1e-45 to 3e38, gives exact-range squared norms; the
combine runs in the buffer's dtype. Groups without a usable angle: see ``GroupStats.usable``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

GRANULARITIES = ("tensor", "layer", "global")
DEFAULT_CHUNK = 1024  # elements per chunk: measured fastest for the batched Gram on CPU (see RESULTS.md)
# Elements of a buffer row converted to float64 at a time: cache-sized on a CPU, large on a GPU.
BLOCK_ELEMENTS = {"cpu": 1 << 19}  # 8 MiB of float64 scratch: stays in the L3 cache
DEFAULT_BLOCK_ELEMENTS = 1 << 24


@dataclass
class GroupStats:
    """The three per-group reductions, float64 tensors of shape (G,)."""

    ss: torch.Tensor  # |s|^2, s = auxiliary gradient
    aa: torch.Tensor  # |a|^2, a = main gradient
    sa: torch.Tensor  # <s, a>

    # Below this ratio |a|^2 / |s|^2 (|a| < 2^-100 |s|), ``a`` is negligible next to ``s``: its direction
    # is numerically meaningless and projecting onto it would need coefficients beyond float32 range.
    NEGLIGIBLE_SQUARED_RATIO = 2.0**-200

    @property
    def finite(self) -> torch.Tensor:
        return torch.isfinite(self.ss) & torch.isfinite(self.aa) & torch.isfinite(self.sa)

    @property
    def usable(self) -> torch.Tensor:
        """Groups where the two gradients define an angle: both non-zero, finite, neither negligible.

        Every method combines other groups as the plain sum ``s + a``: this keeps non-finite input
        non-finite (so a GradScaler sees the overflow) and zero or negligible gradients untouched.
        """
        ratio = self.NEGLIGIBLE_SQUARED_RATIO
        return (
            self.finite
            & (self.ss > 0)
            & (self.aa > 0)
            & (self.aa > self.ss * ratio)
            & (self.ss > self.aa * ratio)
        )

    @property
    def cos(self) -> torch.Tensor:
        """cos(s, a), clamped to [-1, 1]; 0 where a norm is 0 (and NaN where the input is not finite)."""
        denom = torch.sqrt(self.ss) * torch.sqrt(self.aa)
        safe = torch.where(denom > 0, denom, torch.ones_like(denom))
        return torch.where(denom > 0, (self.sa / safe).clamp(-1.0, 1.0), torch.zeros_like(denom))

    @property
    def ratio(self) -> torch.Tensor:
        """|s| / |a| (inf where |a| = 0 and |s| > 0, NaN where both are 0)."""
        return torch.sqrt(self.ss) / torch.sqrt(self.aa)


def default_kind(param: torch.Tensor) -> str:
    """Kind of a tensor for diagnostics when nothing better is known: matrices vs vectors (biases)."""
    return "matrix" if param.dim() >= 2 else "vector"


def group_ids_for(
    shapes: Sequence[torch.Size], granularity: str, groups: Sequence[Hashable] | None
) -> list[int]:
    """Group index (0..G-1, in order of first appearance) of every tensor for a granularity."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity '{granularity}' (known: {', '.join(GRANULARITIES)})")
    if granularity != "layer" and groups is not None:
        raise ValueError(f"groups= applies to granularity='layer' only, not '{granularity}'")
    if granularity == "tensor":
        return list(range(len(shapes)))
    if granularity == "global":
        return [0] * len(shapes)
    if groups is None:
        raise ValueError(
            "granularity='layer' needs groups= (one group id per tensor), e.g. from groups_from_modules()"
        )
    if len(groups) != len(shapes):
        raise ValueError(f"groups= has {len(groups)} entries for {len(shapes)} tensors")
    index: dict[Hashable, int] = {}
    return [index.setdefault(g, len(index)) for g in groups]


class FlatLayout:
    """Where each tensor lives in a flat ``(2, padded)`` buffer, group by group, chunk-aligned.

    Tensors keep their order within a group; groups are laid out in order of first appearance and
    each is padded with zeros to a multiple of ``chunk`` elements, so that no chunk straddles two
    groups. ``chunk_group[c]`` is the group of chunk ``c``.
    """

    def __init__(
        self,
        shapes: Sequence[torch.Size],
        group_ids: Sequence[int],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        chunk: int | None = None,
    ):
        if len(shapes) != len(group_ids):
            raise ValueError("one group id per tensor is needed")
        self.shapes = [torch.Size(s) for s in shapes]
        self.numels = [math.prod(s) for s in self.shapes]
        self.group_ids = list(group_ids)
        self.num_groups = max(self.group_ids, default=-1) + 1
        self.device = torch.device(device)
        self.dtype = dtype
        largest = max([0, *self._group_sizes()])
        # Small models need no 1024-element padding: never more than the largest group needs.
        self.chunk = chunk or min(DEFAULT_CHUNK, max(16, 1 << max(0, largest - 1).bit_length()))
        self.block_elements = BLOCK_ELEMENTS.get(self.device.type, DEFAULT_BLOCK_ELEMENTS)
        self.offsets = [0] * len(self.shapes)
        chunk_group: list[int] = []
        position = 0
        self.group_slices: list[slice] = []
        for g in range(self.num_groups):
            start = position
            for i, gid in enumerate(self.group_ids):
                if gid == g:
                    self.offsets[i] = position
                    position += self.numels[i]
            chunks = -(-(position - start) // self.chunk)  # ceil; an empty group takes no chunk
            position = start + chunks * self.chunk
            chunk_group += [g] * chunks
            self.group_slices.append(slice(start, position))
        self.padded = position
        self.num_chunks = len(chunk_group)
        self.chunk_group = torch.tensor(chunk_group, dtype=torch.long, device=self.device)

    def _group_sizes(self) -> list[int]:
        sizes = [0] * (max(self.group_ids, default=-1) + 1)
        for gid, n in zip(self.group_ids, self.numels):
            sizes[gid] += n
        return sizes

    def new_buffer(self, rows: int = 2) -> torch.Tensor:
        """A zeroed ``(rows, padded)`` buffer (padding must stay zero)."""
        return torch.zeros(rows, self.padded, device=self.device, dtype=self.dtype)

    def views(self, row: torch.Tensor) -> list[torch.Tensor]:
        """Views of one buffer row shaped like the tensors, in the original tensor order."""
        return [row[o : o + n].view(s) for o, n, s in zip(self.offsets, self.numels, self.shapes)]

    def _chunks(self, buffer: torch.Tensor) -> torch.Tensor:
        rows = buffer.shape[0]
        return buffer.view(rows, self.num_chunks, self.chunk).transpose(0, 1)  # (n_chunks, rows, C)

    def reduce(self, buffer: torch.Tensor) -> GroupStats:
        """Per-group |s|^2, |a|^2, <s, a> of a ``(2, padded)`` buffer (row 0: s, row 1: a): one pass.

        The chunk Grams are computed in float64 (any finite float32 gradient has a finite float64
        square): the buffer is streamed through a cache-sized float64 scratch block, so the data is
        still read from memory once.
        """
        chunks = self._chunks(buffer)  # (n_chunks, 2, C)
        if buffer.dtype == torch.float64:
            grams = torch.bmm(chunks, chunks.transpose(1, 2))  # (n_chunks, 2, 2)
        else:
            grams = torch.empty(self.num_chunks, 2, 2, device=self.device, dtype=torch.float64)
            per_block = min(max(1, self.block_elements // self.chunk), max(1, self.num_chunks))
            scratch = torch.empty(per_block, 2, self.chunk, device=self.device, dtype=torch.float64)
            for start in range(0, self.num_chunks, per_block):
                stop = min(self.num_chunks, start + per_block)
                block = scratch[: stop - start]  # (n, 2, C)
                block.copy_(chunks[start:stop])
                torch.bmm(block, block.transpose(1, 2), out=grams[start:stop])
        group_grams = torch.zeros(self.num_groups, 2, 2, device=self.device, dtype=torch.float64)
        group_grams.index_add_(0, self.chunk_group, grams)
        return GroupStats(ss=group_grams[:, 0, 0], aa=group_grams[:, 1, 1], sa=group_grams[:, 0, 1])

    def combine(
        self,
        buffer: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        out: torch.Tensor,
        accumulate: bool = False,
    ) -> None:
        """Write (or with ``accumulate`` add) ``A[g] * s + B[g] * a`` into ``out``, one fused pass.

        ``out`` is a ``(padded,)`` row that must not overlap ``buffer``. Coefficients are cast to the
        buffer's dtype.
        """
        coefficients = torch.stack([A, B], dim=-1).to(self.dtype)  # (G, 2)
        per_chunk = coefficients.index_select(0, self.chunk_group).unsqueeze(1)  # (n_chunks, 1, 2)
        out_chunks = out.view(self.num_chunks, 1, self.chunk)  # (n_chunks, 1, C)
        if accumulate:
            out_chunks.baddbmm_(per_chunk, self._chunks(buffer))
        else:
            torch.bmm(per_chunk, self._chunks(buffer), out=out_chunks)


def _owned_parameters(model: nn.Module) -> dict[int, tuple[str, nn.Module, str]]:
    """id(parameter) -> (qualified module name, module, local parameter name)."""
    owners: dict[int, tuple[str, nn.Module, str]] = {}
    for module_name, module in model.named_modules():
        for local_name, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), (module_name, module, local_name))
    return owners


def groups_from_modules(model: nn.Module, parameters: Sequence[nn.Parameter]) -> list[str]:
    """One group id per parameter for ``granularity="layer"``: the module that owns it.

    Multi-layer RNNs (``nn.LSTM`` etc.) hold all their layers in one module; they are split into one
    group per layer and direction (``blstm/l0``, ``blstm/l0_reverse``, ...) from the parameter's own
    name, which wrappers (DDP, torch.compile) do not change. Identity is by object, never by prefix.
    """
    owners = _owned_parameters(model)
    ids = []
    for param in parameters:
        if id(param) not in owners:
            raise ValueError("a shared parameter does not belong to the model given to groups_from_modules")
        module_name, module, local_name = owners[id(param)]
        group = module_name or "<root>"
        if isinstance(module, nn.RNNBase):
            group += "/" + local_name.split("_", 2)[-1]  # weight_ih_l0_reverse -> l0_reverse
        ids.append(group)
    return ids


def kinds_from_modules(model: nn.Module, parameters: Sequence[nn.Parameter]) -> list[str]:
    """One diagnostics kind per parameter: the owning module's type and the tensor kind."""
    owners = _owned_parameters(model)
    kinds = []
    for param in parameters:
        if id(param) not in owners:
            raise ValueError("a shared parameter does not belong to the model given to kinds_from_modules")
        _, module, local_name = owners[id(param)]
        tensor_kind = "bias" if local_name.startswith("bias") else "weight"
        kinds.append(f"{type(module).__name__}.{tensor_kind}")
    return kinds
