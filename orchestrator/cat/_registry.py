"""Name → rule class registries that remember how each rule was built.

Like Inspect's ``@scorer``/``@solver``: the decorator registers a class under a
snake_case name and wraps its constructor so every instance records the
arguments it was built with (defaults filled in). ``rule.spec()`` then gives
``{"rule": name, "args": {...}}``, plain JSON that a session journal stores
and :meth:`Registry.create` turns back into an equal rule on resume.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from orchestrator.errors import ConfigError, did_you_mean

__all__ = ["Registry", "Rule", "RuleSpec", "rule_int"]

RuleSpec = dict[str, Any]
T = TypeVar("T")


def _jsonable(value: Any) -> Any:
    """Rules nested in arguments (``any_of``) are stored as their specs."""
    if hasattr(value, "spec") and callable(value.spec):
        return value.spec()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def rule_int(kind: str, rule: str, name: str, value: object, lo: int) -> int:
    """``value`` as an int ≥ ``lo``, else a ConfigError naming the rule and the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ConfigError(f"{kind} {rule!r}: {name} must be an integer ≥ {lo}; got {value!r}")
    return int(value)


class Rule:
    """Base of registered rules: a rule *is* its recorded spec.

    Two rules of one registry are equal (and hash alike) when they were built
    with the same arguments, which is what lets a resumed controller check it
    got the rules it journalled.
    """

    name: ClassVar[str]
    _kind: ClassVar[str]  # the registry's kind, set by Registry.register
    _spec: RuleSpec

    def spec(self) -> RuleSpec:
        """``{"rule": name, "args": {...}}``: JSON that rebuilds this rule."""
        return copy.deepcopy(self._spec)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._spec["args"].items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and self._kind == other._kind and self._spec == other._spec

    def __hash__(self) -> int:
        return hash(repr(self))


class Registry(Generic[T]):
    """A registry of rule classes of one kind (``"selection rule"``, ``"stopping rule"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._classes)}",
                hint=f"registered {self.kind}s: {', '.join(self.names())}",
            ) from None

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: register under ``name`` and record constructor arguments."""
        if not name.isidentifier() or name != name.lower():
            raise ValueError(f"{self.kind} names are snake_case identifiers; got {name!r}")

        def decorate(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            init = cls.__init__
            signature = inspect.signature(init)

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
                    raise ConfigError(
                        f"{self.kind} {name!r}: arguments must be plain JSON values "
                        f"(numbers, strings, lists, objects); {exc}"
                    ) from None
                self_._spec = {"rule": name, "args": recorded}

            cls.__init__ = recording_init  # type: ignore[method-assign]
            cls.name = name  # type: ignore[attr-defined]
            cls._kind = self.kind  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return decorate

    def create(self, spec: str | Mapping[str, Any] | T) -> T:
        """Build a rule from a name, a ``{"rule": name, "args": {...}}`` spec, or pass one through.

        Raises:
            ConfigError: unknown rule or argument (with a did-you-mean), or a
                rejected argument value.
        """
        if isinstance(spec, str):
            name, args = spec, {}
        elif isinstance(spec, Mapping):
            unknown = set(spec) - {"rule", "args"}
            if "rule" not in spec or unknown:
                raise ConfigError(
                    f"a {self.kind} spec is {{'rule': NAME, 'args': {{...}}}}; got {dict(spec)!r}"
                )
            name, args = spec["rule"], dict(spec.get("args") or {})
        elif any(isinstance(spec, c) for c in self._classes.values()):
            return spec  # type: ignore[return-value]
        else:
            raise ConfigError(
                f"a {self.kind} is a name, a spec dict or a rule object; got {type(spec).__name__}"
            )
        cls = self.get(str(name))
        params = [p for p in inspect.signature(cls).parameters.values() if p.name != "self"]
        allowed = {p.name for p in params}
        for key in args:
            if key not in allowed:
                raise ConfigError(
                    f"{self.kind} {name!r} has no argument {key!r}{did_you_mean(key, allowed)}",
                    hint=f"its arguments: {', '.join(sorted(allowed)) or '(none)'}",
                )
        missing = [p.name for p in params if p.default is p.empty and p.name not in args]
        if missing:
            raise ConfigError(f"{self.kind} {name!r} needs argument(s) {', '.join(missing)}")
        return cls(**copy.deepcopy(args))
