"""One registry idiom for every family chosen by name in a config (tasks, heads, samplers, strategies).

As in timm (``@register_model`` + ``create_model``): each family declares one :class:`Registry`
beside its base class, every member class is decorated with ``@REGISTRY.register`` where it is
defined, and configs look members up with ``REGISTRY.get(name)`` or ``REGISTRY.build(name, ...)``.
An unknown name is a :class:`ScaleNASError` naming the config key, the valid choices and the closest
one. A family whose members live in several modules names its package: the first lookup imports
every module of it, so a new member registers by existing, with no import list to keep in step.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, TypeVar

from scalenas.errors import ScaleNASError

T = TypeVar("T")


class Registry:
    """Classes of one family by name.

    Args:
        family: what a member is, for messages ("task", "sampler").
        key: the config key that names a member, for messages ("task.name", "sampler.kind").
        attr: the class attribute holding a member's name ("name", "kind").
        package: a package whose modules define the members; imported in full on the first lookup.
    """

    def __init__(self, family: str, key: str, attr: str = "name", package: str | None = None):
        self.family, self.key, self.attr, self.package = family, key, attr, package
        self._classes: dict[str, type] = {}
        self._imported = package is None

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: add ``cls`` under its ``attr`` attribute."""
        name = getattr(cls, self.attr, "")
        if not name:
            raise TypeError(f"{cls.__qualname__}: a registered {self.family} needs a non-empty {self.attr!r}")
        if self._classes.get(name, cls) is not cls:
            raise TypeError(f"{self.family} {name!r}: registered twice ({self._classes[name].__qualname__}, "
                            f"{cls.__qualname__})")
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        self._import_members()
        return sorted(self._classes)

    def get(self, name: str) -> type:
        """The class registered as ``name``; otherwise a one-line error with the choices."""
        if name not in self._classes:
            self._import_members()
        if name not in self._classes:
            names = self.names()
            close = difflib.get_close_matches(str(name), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ScaleNASError(f"{self.key}: unknown {self.family} {name!r}; choose one of "
                                f"{', '.join(names) or 'none'}{hint}")
        return self._classes[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)

    def _import_members(self) -> None:
        if self._imported:
            return
        self._imported = True  # before importing: a member module may look the registry up while loading
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{self.package}.{mod.name}")
