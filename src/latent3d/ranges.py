"""Valid values, declared once: a config field states its range where it is defined, and everything else reads it
from there (issue 30).

- ``steps: int = within(1, 10**7, default=2000)`` declares the field's default and range (the field keeps its
  docstring, which stays the option's help);
- :func:`latent3d.options.field_option` turns the range into the option's check, run by the command-line parser
  before anything loads (one line, exit 2);
- :func:`check_config`, called by each config's ``__post_init__``, checks every field's type, range and choices and
  the config's ``relations()`` (a width divisible by the group-norm groups, an attention resolution that is a volume
  side), so a config built by code or read from a model folder's ``config.json`` is refused the same way;
- an option that is no config field takes a :class:`Range` as its callback (``typer.Option(callback=Range(1, 64))``).

Importing this module loads no torch (the command line imports it for ``--help``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

from latent3d.errors import UserError

SEED_MAX = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer


@dataclass(frozen=True)
class Range:
    """Valid numbers ``lo..hi`` (``open_lo``: lo itself excluded), or one of ``also``. For a tuple-valued setting
    (a comma-separated option) every entry must be valid and the entry count lie in ``count``."""

    lo: float
    hi: float
    open_lo: bool = False
    open_hi: bool = False
    also: tuple[float, ...] = ()
    integer: bool = True
    count: tuple[int, int] | None = None

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        lo, hi = (f"{v:g}" if not self.integer else str(int(v)) for v in (self.lo, self.hi))
        span = f"in {'(' if self.open_lo else '['}{lo}, {hi}{')' if self.open_hi else ']'}"
        extra = "".join(f" or {a:g}" for a in self.also)
        return f"{kind} {span}{extra}"

    def why(self, value: Any) -> str | None:
        """None if ``value`` is valid, else what is wrong (for one error line)."""
        if self.count is not None:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and self.count[0] <= 1:
                value = (value,)  # a setting that takes X or LO,HI
            if not isinstance(value, (tuple, list)):
                return f"takes comma-separated entries, got {value!r}"
            lo, hi = self.count
            if not lo <= len(value) <= hi:
                return f"takes {lo if lo == hi else f'{lo} to {hi}'} comma-separated entries, got {len(value)}"
            return next((f"has entry {v!r}: each must be {self.describe()}" for v in value if self._bad(v)), None)
        return f"must be {self.describe()}, got {value!r}" if self._bad(value) else None

    def _bad(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (self.integer and not isinstance(v, int)):
            return True
        if v in self.also:
            return False
        return (not math.isfinite(v) or v > self.hi or v < self.lo or (self.open_lo and v == self.lo)
                or (self.open_hi and v == self.hi))

    def parse(self, text: str) -> tuple[float, ...]:
        """``"32,16"`` -> (32, 16) (a tuple-valued option's text); ValueError for anything but numbers."""
        conv = int if self.integer else float
        return tuple(conv(t) for t in text.split(",") if t.strip())

    def __call__(self, value: Any) -> Any:
        """Click callback: check (and parse, for a tuple-valued option) the option's value."""
        import typer

        if value is None:
            return None
        if self.count is not None and isinstance(value, str):
            try:
                value = self.parse(value)
            except ValueError:
                kind = "whole numbers" if self.integer else "numbers"
                raise typer.BadParameter(f"{value!r}: give comma-separated {kind}") from None
        problem = self.why(value)
        if problem:
            raise typer.BadParameter(problem)
        return value


def within(lo: float, hi: float, default: Any, *, open_lo: bool = False, open_hi: bool = False,
           also: tuple[float, ...] = (), count: tuple[int, int] | None = None) -> Any:  # fmt: skip
    """A dataclass field with ``default`` whose valid values are ``lo..hi`` (see :class:`Range`; whole numbers or
    not follows the field's type annotation)."""
    rng = Range(lo, hi, open_lo=open_lo, open_hi=open_hi, also=also, count=count)
    return dataclasses.field(default=default, metadata={"range": rng})


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    """Each field's type; one named only for type checkers (``if TYPE_CHECKING:`` imports) reads as Any."""
    import sys

    out = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        env = vars(sys.modules[klass.__module__])
        for name, ann in vars(klass).get("__annotations__", {}).items():
            try:
                out[name] = eval(ann, env) if isinstance(ann, str) else ann  # noqa: S307 (our own annotations)
            except NameError:
                out[name] = Any
    return out


def _is_int(hint: Any) -> bool:
    """An int field (or a tuple / optional of ints), not a float one."""
    args = typing.get_args(hint)
    if hint is int:
        return True
    return bool(args) and all(_is_int(a) or a in (type(None), Ellipsis) for a in args) and int in _leaves(hint)


def _leaves(hint: Any) -> set:
    args = typing.get_args(hint)
    return set().union(*(_leaves(a) for a in args)) if args else {hint}


@lru_cache(maxsize=None)
def field_range(cls: type, name: str) -> Range | None:
    """The declared range of field ``name`` of dataclass ``cls`` (None if it declares none), with ``integer``
    set from the field's type."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    rng = f.metadata.get("range")
    return None if rng is None else dataclasses.replace(rng, integer=_is_int(_hints(cls)[name]))


def choices(cls: type, name: str) -> tuple[str, ...] | None:
    """The values of a ``Literal[...]`` field (None for any other type)."""
    hint = _hints(cls)[name]
    lit = [a for a in (hint, *typing.get_args(hint)) if typing.get_origin(a) is typing.Literal]
    return typing.get_args(lit[0]) if lit else None


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the plain type ``hint`` names (int, float, bool, str, None, tuples, unions, literals);
    other types (nested configs) are not checked here."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
    return True


def problems(cfg: Any) -> Iterator[str]:
    """What is wrong with dataclass instance ``cfg``: each field's type, range and choices; then, if those all
    hold, the messages of its ``relations()`` (which may then rely on every field being valid)."""
    cls = type(cfg)
    hints, found = _hints(cls), []
    for f in dataclasses.fields(cls):
        v, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
        rng = field_range(cls, f.name)
        if not _type_ok(v, hints[f.name]):
            opts = choices(cls, f.name)
            want = f"one of {', '.join(opts)}" if opts else f"of type {_type_name(hints[f.name])}"
            found.append(f"{flag} must be {want}, got {v!r}")
        elif rng is not None and v is not None and rng.why(v):
            found.append(f"{flag} {rng.why(v)}")
    yield from found
    if not found and hasattr(cfg, "relations"):
        yield from cfg.relations()


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_config(cfg: Any) -> None:
    """Raise one :class:`UserError` line for the first problem of ``cfg`` (see :func:`problems`)."""
    problem = next(problems(cfg), None)
    if problem is not None:
        raise UserError(f"{problem}")


@dataclass(frozen=True)
class OneOf:
    """Click callback of a text option with a fixed set of values (a ``Literal[...]`` field)."""

    values: tuple[str, ...]

    def __call__(self, value: Any) -> Any:
        import typer

        if value is not None and value not in self.values:
            raise typer.BadParameter(f"must be one of {', '.join(self.values)}, got {value!r}")
        return value
