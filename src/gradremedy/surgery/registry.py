"""The one list of gradient methods: a name -> class registry, and ``build_method`` that checks settings.

Every built-in method is registered here by ONE line of :data:`BUILTIN_METHODS` (its name and where its
class lives); the class is imported when the method is first built or listed. Everything that offers a
choice of method (the CLI, the config check, ``gradremedy compare``, the report) reads
:func:`method_names`, so adding a method is one new file plus one line below. A method from outside the
package is added with :func:`register_method`.

A method's settings are the keyword arguments of its ``__init__``; ``build_method`` refuses any other
key with one line naming the method and its settings.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from gradremedy.errors import UserError
from gradremedy.surgery.base import GradientMethod

# name -> "module:Class". One line per method; the order is the order of method_names().
BUILTIN_METHODS: dict[str, str] = {
    "sum": "gradremedy.surgery.plain_sum:PlainSum",
    "gr": "gradremedy.surgery.remedy:GradientRemedy",
    "pcgrad": "gradremedy.surgery.pcgrad:PCGrad",
    "gradvac": "gradremedy.surgery.gradvac:GradVac",
    "cagrad": "gradremedy.surgery.cagrad:CAGrad",
    "mgda": "gradremedy.surgery.mgda:MGDA",
    "imtl": "gradremedy.surgery.imtl:IMTLG",
}

_REGISTRY: dict[str, type[GradientMethod] | str] = dict(BUILTIN_METHODS)


class SurgeryError(UserError, ValueError):
    """An unknown method or a bad setting (a config error: printed as one line by the CLI)."""


def register_method(name: str, cls: type[GradientMethod], *, replace: bool = False) -> None:
    """Add a method class under ``name`` (a :class:`GradientMethod` subclass whose ``name`` is ``name``)."""
    if not (isinstance(cls, type) and issubclass(cls, GradientMethod)):
        raise SurgeryError(f"register_method('{name}'): {cls!r} is not a GradientMethod subclass")
    if cls.name != name:
        raise SurgeryError(f"register_method('{name}'): the class's name attribute is '{cls.name}'")
    if name in _REGISTRY and not replace:
        raise SurgeryError(f"a gradient method '{name}' is already registered (pass replace=True)")
    _REGISTRY[name] = cls


def method_names() -> tuple[str, ...]:
    """Every registered method name, built-ins first, in registration order."""
    return tuple(_REGISTRY)


def method_class(name: str) -> type[GradientMethod]:
    """The class registered under ``name`` (imported on first use)."""
    if name not in _REGISTRY:
        raise SurgeryError(f"unknown gradient method '{name}' (known: {', '.join(_REGISTRY)})")
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = getattr(importlib.import_module(module), attribute)
        _REGISTRY[name] = entry
    return entry


def method_settings(name: str, *, required: bool = True) -> dict[str, Any]:
    """The settings a method takes and their defaults, e.g. ``{"K": 5.0, "granularity": "tensor", ...}``.

    A setting without a default is listed with ``None`` (left out with ``required=False``).
    """
    signature = inspect.signature(method_class(name).__init__)
    return {
        key: (None if p.default is inspect.Parameter.empty else p.default)
        for key, p in signature.parameters.items()
        if key != "self"
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and (required or p.default is not inspect.Parameter.empty)
    }


def build_method(name: str, **settings: Any) -> GradientMethod:
    """Build a method by name, e.g. ``build_method("gr", K=5, max_stretch=1000, granularity="tensor")``.

    Every method takes ``granularity`` (tensor | layer | global); the others are its own (see
    :func:`method_settings`). A setting the method does not take, or a value it refuses, is a
    :class:`SurgeryError` (one line), never silently ignored.
    """
    known = method_settings(name)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise SurgeryError(
            f"method '{name}' has no setting {', '.join(unknown)} (its settings: {', '.join(known)})"
        )
    try:
        return method_class(name)(**settings)
    except (TypeError, ValueError) as err:
        raise SurgeryError(str(err).splitlines()[0]) from None
