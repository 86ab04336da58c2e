"""One registry for everything agentcat builds by name.

Selection rules, stopping rules, scenario check kinds and item sources are each
a :class:`Registry` of classes. As with Inspect's ``@scorer``/``@sandboxenv``,
a decorator registers a class under a snake_case name, and an object is built
from its name plus arguments. The object remembers how it was built, so files
store plain JSON — a journal keeps ``{"rule": "se", "args": {"se": 0.3}}``, a
bank keeps ``{"kind": "scenario", "family": ..., "variant": ...}`` — and
building from that JSON again gives an equal object (this is how ``resume``
gets back the same controller).

A class states its arguments in one of two ways:

* **keyword parameters of its constructor** (the CAT rules): unknown and
  missing names are rejected here with a did-you-mean, the constructor checks
  the values (with :mod:`orchestrator._validation`), and the registry records
  the bound arguments, defaults filled in (:class:`Recorded`);
* **a pydantic model** (a check kind declares ``Args``; an item source *is* a
  model): pydantic checks names, types and values, and the validated model is
  the record.

Every error a user can cause is the registry's project error (``ConfigError``
unless the registry says otherwise). Other packages add classes without
touching agentcat: a distribution names a module in the registry's entry-point
group (``[project.entry-points."agentcat.selection_rules"] mine = "my_pkg.rules"``),
and that module is imported — so its decorators register — the first time a
name is not found or the names are listed.

This module imports no Inspect, Docker or numerical code: ``cat`` stays pure.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.metadata
import inspect
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from orchestrator._validation import parse_model
from orchestrator.errors import AgentcatError, ConfigError, did_you_mean

__all__ = ["Recorded", "Registry"]

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _jsonable(value: Any) -> Any:
    """Registered objects nested in arguments (``any_of``'s rules) are stored as their specs."""
    if isinstance(value, Recorded):
        return value.spec()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Recorded:
    """Base of classes whose constructor arguments the registry records.

    The object *is* its recorded spec: two objects of one registry are equal
    (and hash alike) when they were built with the same arguments, which lets
    a resumed session check that it rebuilt what it journalled.
    """

    _registry_kind: ClassVar[str]  # set by Registry.register
    _spec: dict[str, Any]

    def spec(self) -> dict[str, Any]:
        """``{key: name, "args": {...}}``: JSON that rebuilds this object (``Registry.create``)."""
        return copy.deepcopy(self._spec)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._spec["args"].items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Recorded)
            and self._registry_kind == other._registry_kind
            and self._spec == other._spec
        )

    def __hash__(self) -> int:
        return hash(repr(self))


class Registry(Generic[T]):
    """Name → class registry of one kind of object.

    Args:
        kind: What the classes are, in messages (``"selection rule"``).
        key: The name's key in a spec, ``{key: name, "args": {...}}`` (``"rule"``, ``"kind"``).
        attr: Class attribute the registered name is written to (``name``, ``kind``).
        group: Entry-point group that plugins register through (``agentcat.selection_rules``).
        error: The project error raised for bad names and arguments.
    """

    def __init__(
        self,
        kind: str,
        *,
        key: str = "rule",
        attr: str = "name",
        group: str | None = None,
        error: type[AgentcatError] = ConfigError,
    ) -> None:
        self.kind = kind
        self.key = key
        self.attr = attr
        self.group = group
        self.error = error
        self._classes: dict[str, type[T]] = {}
        self._plugins_loaded = group is None

    # -- lookup ----------------------------------------------------------------
    def names(self) -> list[str]:
        """Registered names (plugins included), sorted."""
        self._load_plugins()
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        if name not in self._classes:
            self._load_plugins()
        return name in self._classes

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``.

        Raises:
            error: unknown name, with the closest registered one.
        """
        if name not in self:
            raise self.error(
                f"unknown {self.kind} {name!r}{did_you_mean(str(name), self._classes)}",
                hint=f"registered {self.kind}s: {', '.join(self.names())}",
            )
        return self._classes[name]

    def _load_plugins(self) -> None:
        """Import the modules of the group's entry points once (their decorators register)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True  # also guards against a plugin that looks names up
        for ep in importlib.metadata.entry_points(group=self.group):
            try:
                ep.load()
            except Exception as exc:
                self._plugins_loaded = False
                raise self.error(
                    f"{self.kind} plugin {ep.name!r} ({ep.value}, entry point group "
                    f"{self.group}) failed to load: {type(exc).__name__}: {exc}",
                    hint="fix or uninstall the package that declares this entry point",
                ) from exc

    # -- registration ------------------------------------------------------------
    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: register under ``name`` (snake_case, unique in this registry)."""
        if not _NAME.match(name):
            raise ConfigError(f"{self.kind} names are snake_case identifiers; got {name!r}")

        def decorate(cls: type[T]) -> type[T]:
            known = self._classes.get(name)
            if known is not None and known is not cls:
                raise ConfigError(f"{self.kind} {name!r} is already registered by {known!r}")
            if issubclass(cls, Recorded):
                self._record_arguments(cls, name)
            setattr(cls, self.attr, name)
            self._classes[name] = cls
            return cls

        return decorate

    def _record_arguments(self, cls: type[Recorded], name: str) -> None:
        """Wrap ``cls.__init__`` so every instance stores ``{key: name, "args": bound args}``."""
        init = cls.__init__
        signature = inspect.signature(init)
        registry = self

        @functools.wraps(init)
        def recording_init(self_: Any, *args: Any, **kwargs: Any) -> None:
            init(self_, *args, **kwargs)
            if type(self_) is not cls:  # a subclass records its own arguments
                return
            bound = signature.bind(self_, *args, **kwargs)
            bound.apply_defaults()
            recorded = {k: v for k, v in bound.arguments.items() if k != "self"}
            normalise = getattr(self_, "_normalise_args", None)
            if normalise is not None:  # e.g. nested rules stored with their full specs
                recorded = normalise(recorded)
            recorded = {k: _jsonable(v) for k, v in recorded.items()}
            try:
                json.dumps(recorded, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise registry.error(
                    f"{registry.kind} {name!r}: arguments must be plain JSON values "
                    f"(numbers, strings, lists, objects); {exc}"
                ) from None
            self_._spec = {registry.key: name, "args": recorded}

        cls.__init__ = recording_init  # type: ignore[method-assign]
        cls._registry_kind = self.kind

    # -- construction --------------------------------------------------------------
    def create(self, spec: str | Mapping[str, Any] | T, *, where: str | None = None) -> T:
        """Build an object from a name, a ``{key: name, "args": {...}}`` spec, or pass one through.

        Raises:
            error: unknown name or argument (with a did-you-mean), a malformed
                spec, or an argument value the class rejects.
        """
        if isinstance(spec, str):
            return self.build(spec, {}, where=where)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {self.key, "args"}
            if self.key not in spec or unknown:
                raise self.error(
                    f"a {self.kind} spec is {{'{self.key}': NAME, 'args': {{...}}}}; "
                    f"got {dict(spec)!r}"
                )
            args = spec.get("args") or {}
            if not isinstance(args, Mapping):
                raise self.error(f"{self.kind} {spec[self.key]!r}: args must be a mapping")
            return self.build(str(spec[self.key]), args, where=where)
        if any(isinstance(spec, c) for c in self._classes.values()):
            return spec  # type: ignore[return-value]
        raise self.error(
            f"a {self.kind} is a name, a spec dict or a {self.kind} object; "
            f"got {type(spec).__name__}"
        )

    def build(self, name: str, args: Mapping[str, Any], *, where: str | None = None) -> T:
        """Build the ``name`` class from ``args``, validated as the class states them.

        Args:
            where: Where the spec was written (a file and location): prefixes
                an unknown-name error and validation messages of
                pydantic-declared arguments.
        """
        try:
            cls = self.get(name)
        except AgentcatError as exc:
            if where is None:
                raise
            raise self.error(f"{where}: {exc.message}", hint=exc.hint) from None
        model = _argument_model(cls)
        if model is not None:
            source = f"{where or self.kind} ({self.key} {name!r})"
            parsed = parse_model(model, dict(args), source, self.error)
            return parsed if model is cls else cls(parsed)  # type: ignore[return-value,call-arg]
        self._check_keywords(cls, name, args)
        return cls(**copy.deepcopy(dict(args)))

    def _check_keywords(self, cls: type[T], name: str, args: Mapping[str, Any]) -> None:
        params = [p for p in inspect.signature(cls).parameters.values() if p.name != "self"]
        allowed = {p.name for p in params}
        for key in args:
            if key not in allowed:
                raise self.error(
                    f"{self.kind} {name!r} has no argument {key!r}{did_you_mean(key, allowed)}",
                    hint=f"its arguments: {', '.join(sorted(allowed)) or '(none)'}",
                )
        missing = [p.name for p in params if p.default is p.empty and p.name not in args]
        if missing:
            raise self.error(f"{self.kind} {name!r} needs argument(s) {', '.join(missing)}")

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._classes)})"


def _argument_model(cls: type) -> type[BaseModel] | None:
    """The pydantic model that states ``cls``'s arguments: ``cls`` itself, or ``cls.Args``."""
    if issubclass(cls, BaseModel):
        return cls
    model = getattr(cls, "Args", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None
