"""gradremedy's gradient methods as torchjd aggregators, so torchjd users get Gradient Remedy in one line.

torchjd (Jacobian descent) computes the Jacobian of several losses and hands it, as one ``(m, n)``
matrix with one row per loss, to an :class:`torchjd.aggregation.Aggregator` that returns the vector
stored in ``.grad``. Here ``m = 2`` with the rows ordered **(main, aux)**::

    from torchjd.autojac import backward, jac_to_grad
    from gradremedy.integrations.torchjd import GradientRemedy

    backward([main_loss, aux_loss], inputs=shared)            # shared[i].jac: (2, *shape)
    jac_to_grad(shared, GradientRemedy(tensors=shared, K=5))  # shared[i].grad: the GR combination

Every method of gradremedy's registry is available by name, ``aggregator("pcgrad", tensors=shared)``.

Granularity. torchjd joins the Jacobians of all tensors into one matrix before aggregating, so an
aggregator only knows where one tensor ends and the next begins if it is told: pass ``tensors=``
(the same tensors, in the same order, as given to ``jac_to_grad``) for the per-tensor rule of the
paper (the default then), or ``granularity="layer"`` with ``groups=``. Without ``tensors=`` the whole
matrix is one group (``granularity="global"``), the only choice that needs no layout.

For ``granularity="global"`` every method is a function of the 2x2 Gramian alone:
:class:`MethodWeighting` gives its row weights ``(B, A)`` from the Gramian, for torchjd's autogram
engine or ``GramianWeightedAggregator``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

try:
    from torchjd.aggregation import Aggregator, Weighting
except ImportError as err:  # the framework is optional: say what to install
    raise ImportError(
        "gradremedy.integrations.torchjd needs torchjd: pip install torchjd "
        "(or run scripts/setup-integrations.sh)"
    ) from err

from gradremedy.surgery import apply_method, build_method
from gradremedy.surgery.base import GradientMethod
from gradremedy.surgery.grouping import GroupStats

__all__ = ["GradientRemedy", "MethodAggregator", "MethodWeighting", "aggregator"]


class MethodAggregator(Aggregator):
    """A gradremedy :class:`GradientMethod` as a torchjd aggregator of a ``(2, n)`` matrix (main, aux).

    ``tensors``: the tensors whose Jacobians are joined into the matrix, in order (only their shapes
    are kept), needed unless the method's granularity is ``"global"``. ``groups``: one group id per
    tensor for ``granularity="layer"``. The method keeps its own state across calls (GradVac's
    targets), as it does in gradremedy's engine.
    """

    def __init__(
        self,
        method: GradientMethod,
        tensors: Iterable[Tensor] | None = None,
        groups: Sequence[Hashable] | None = None,
    ) -> None:
        super().__init__()
        self.method = method
        self.shapes = None if tensors is None else [torch.Size(t.shape) for t in tensors]
        if self.shapes is None and method.granularity != "global":
            raise ValueError(
                f"{method.name} with granularity='{method.granularity}' needs tensors= (the tensors given "
                "to jac_to_grad, in order) to find each tensor's columns; or use granularity='global'"
            )
        self.groups = None if groups is None else list(groups)

    def forward(self, matrix: Tensor, /) -> Tensor:
        if matrix.shape[0] != 2:
            raise ValueError(
                f"{self.method.name}: expected a Jacobian with 2 rows (main, aux), "
                f"got shape {tuple(matrix.shape)}"
            )
        with torch.no_grad():  # the methods are not meant to be differentiated through
            if self.shapes is None:
                main, aux = [matrix[0]], [matrix[1]]
            else:
                numels = [math.prod(s) for s in self.shapes]
                if sum(numels) != matrix.shape[1]:
                    raise ValueError(
                        f"{self.method.name}: the Jacobian has {matrix.shape[1]} columns but tensors= "
                        f"has {sum(numels)} elements"
                    )
                main = [c.view(s) for c, s in zip(matrix[0].split(numels), self.shapes)]
                aux = [c.view(s) for c, s in zip(matrix[1].split(numels), self.shapes)]
            combined = apply_method(self.method, main, aux, groups=self.groups)
            return torch.cat([c.reshape(-1) for c in combined if c is not None])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.method!r})"

    def __str__(self) -> str:
        return f"{type(self).__name__}[{self.method.name}]"


def aggregator(
    name: str,
    *,
    tensors: Iterable[Tensor] | None = None,
    groups: Sequence[Hashable] | None = None,
    **settings: Any,
) -> MethodAggregator:
    """The registry method ``name`` (``build_method(name, **settings)``) as a torchjd aggregator.

    Without an explicit ``granularity`` it is ``"tensor"`` when ``tensors`` is given and ``"global"``
    otherwise (see the module docstring).
    """
    tensors = None if tensors is None else list(tensors)
    settings.setdefault("granularity", "global" if tensors is None else "tensor")
    return MethodAggregator(build_method(name, **settings), tensors=tensors, groups=groups)


class GradientRemedy(MethodAggregator):
    """Gradient Remedy (Hu et al., ICASSP 2023) as a torchjd aggregator; rows ordered (main, aux).

    ``settings`` are those of ``build_method("gr", ...)`` (``K``, ``max_stretch``, ``granularity``).
    """

    def __init__(
        self,
        *,
        tensors: Iterable[Tensor] | None = None,
        groups: Sequence[Hashable] | None = None,
        **settings: Any,
    ) -> None:
        tensors = None if tensors is None else list(tensors)
        settings.setdefault("granularity", "global" if tensors is None else "tensor")
        super().__init__(build_method("gr", **settings), tensors=tensors, groups=groups)


class MethodWeighting(Weighting):
    """Row weights ``(B, A)`` of a global-granularity method from the 2x2 Gramian of (main, aux).

    The combination ``A * aux + B * main`` depends on the Jacobian only through its Gramian
    ``[[|a|^2, <a,s>], [<s,a>, |s|^2]]``, so the method is also a torchjd Gramian weighting (autogram).
    """

    def __init__(self, method: GradientMethod) -> None:
        super().__init__()
        if method.granularity != "global":
            raise ValueError(
                f"{method.name}: a Gramian weighting needs granularity='global', got '{method.granularity}'"
            )
        self.method = method

    def forward(self, gramian: Tensor, /) -> Tensor:
        if gramian.shape != (2, 2):
            raise ValueError(
                f"{self.method.name}: expected a 2x2 Gramian (main, aux), got {tuple(gramian.shape)}"
            )
        with torch.no_grad():
            g = gramian.to(torch.float64)
            stats = GroupStats(ss=g[1, 1].reshape(1), aa=g[0, 0].reshape(1), sa=g[0, 1].reshape(1))
            A, B, _ = self.method.coefficients(stats)
            return torch.stack([B[0], A[0]]).to(gramian.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.method!r})"
