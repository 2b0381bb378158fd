"""Parameters: one validation path for the Python API and the command line.

Every parameter set is a frozen dataclass derived from :class:`Params`; each
field names its rule (``integer(minimum=2)``, ``number(above=0)``, ...), and
``__post_init__`` applies the rules, so ``ZScoreParams(window=1)`` and
``ZScoreParams.from_mapping({"window": 1})`` fail the same way.

Errors are :class:`ParamError` (a ``ValueError``; :class:`ParamTypeError` for a
value of the wrong type is also a ``TypeError``) worded with the Python
argument's name: ``window must be >= 2, not 1``.  The command line rewords them
with :func:`for_option` in its own terms: ``--params: 'window' must be >= 2, not 1``
for a key of a JSON option, ``--threads must be >= 1, not 0`` for a flag.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from shared.errors import UsageError

Rule = Callable[[str, Any], Any]
P = TypeVar("P", bound="Params")


class ParamError(UsageError):
    """A bad argument, worded with its Python name (``window must be >= 2, not 1``).

    ``name`` is the argument, ``problem`` the rest of the sentence and ``kind``
    one of ``"value"``, ``"unknown"`` or ``"missing"``, so that a command line
    can reword the message for its own option names.  As a ``UsageError`` it
    is also a ``ValueError`` and maps to exit status 2.
    """

    def __init__(self, name: str, problem: str, kind: str = "value") -> None:
        self.name, self.problem, self.kind = name, problem, kind
        super().__init__(f"{name} {problem}")

    def for_option(self, option: str, *, key: bool = True) -> UsageError:
        """The same error in command-line words: a key of JSON ``option``, or a flag."""
        if not key:
            return UsageError(f"{option} {self.problem}")
        if self.kind == "unknown":
            allowed = self.problem.removeprefix("is not a parameter ")
            return UsageError(f"{option}: unknown key '{self.name}' {allowed}")
        if self.kind == "missing":
            return UsageError(f"{option}: missing required key '{self.name}'")
        return UsageError(f"{option}: '{self.name}' {self.problem}")


class ParamTypeError(ParamError, TypeError):
    """A :class:`ParamError` for a value of the wrong type (also a ``TypeError``)."""


@contextmanager
def for_option(option: str, *, key: bool = True) -> Iterator[None]:
    """Reword a :class:`ParamError` raised inside the block for command-line ``option``.

    ``key=True``: the parameters are keys of a JSON option (``--params``);
    ``key=False``: the parameter is the flag itself (``--threads``).
    """
    try:
        yield
    except ParamError as e:
        raise e.for_option(option, key=key) from None


# ----------------------------------------------------------------------------- rules


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(
    minimum: int | None = None, *, odd: bool = False, strict: bool = False, what: str = ""
) -> Rule:
    """Rule for an integer; ``strict`` refuses integral floats such as ``12.0``.

    ``what`` words the requirement (default "an integer >= minimum").
    """

    def check(name: str, value: Any) -> int:
        ok = _is_number(value) and (not strict or isinstance(value, int))
        ok = ok and math.isfinite(value) and value == int(value)
        ok = ok and (minimum is None or value >= minimum) and (not odd or int(value) % 2 == 1)
        if ok:
            return int(value)
        if what:
            raise ParamError(name, f"must be {what}, got {value!r}")
        if not _is_number(value):
            raise ParamTypeError(name, f"must be an integer, not {value!r}")
        if strict and not isinstance(value, int):
            raise ParamTypeError(name, f"must be an integer >= {minimum}, got {value!r}")
        if not (math.isfinite(value) and value == int(value)):
            raise ParamError(name, f"must be an integer, not {value!r}")
        raise ParamError(name, f"must be >= {minimum}, not {value}")

    return check


def number(minimum: float | None = None, *, above: float | None = None) -> Rule:
    """Rule for a finite real number, optionally ``>= minimum`` or ``> above``."""

    def check(name: str, value: Any) -> float:
        if not _is_number(value):
            raise ParamTypeError(name, f"must be a number, not {value!r}")
        if not math.isfinite(value):
            raise ParamError(name, f"must be finite, not {value!r}")
        if minimum is not None and value < minimum:
            raise ParamError(name, f"must be >= {minimum:g}, not {value:g}")
        if above is not None and value <= above:
            raise ParamError(name, f"must be > {above:g}, not {value:g}")
        return float(value)

    return check


def boolean() -> Rule:
    """Rule for ``True``/``False`` (not 0/1)."""

    def check(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParamTypeError(name, f"must be true or false, not {value!r}")
        return value

    return check


def choice(*options: str) -> Rule:
    """Rule for one of a few strings."""

    def check(name: str, value: Any) -> str:
        if value not in options:
            words = " or ".join(repr(o) for o in options)
            raise ParamError(name, f"must be {words}, not {value!r}")
        return value

    return check


def optional(rule: Rule) -> Rule:
    """``rule``, but ``None`` passes (meaning "use the derived default")."""

    def check(name: str, value: Any) -> Any:
        return None if value is None else rule(name, value)

    return check


def param(default: Any = MISSING, rule: Rule | None = None) -> Any:
    """A dataclass field with a validation rule (no default: the key is required)."""
    return field(default=default, metadata={"rule": rule})


@dataclass(frozen=True)
class Params:
    """Base of every parameter set: fields with rules, checked on construction.

    Subclasses list fields made with :func:`param` and may override
    :meth:`check` for rules that relate several fields.  Build from keyword
    arguments (the Python API) or from a mapping (JSON on the command line).
    """

    def __post_init__(self) -> None:
        for f in fields(self):
            rule = f.metadata.get("rule")
            if rule is not None:
                object.__setattr__(self, f.name, rule(f.name, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Rules across fields; raise :class:`ParamError` naming the argument."""

    @classmethod
    def from_mapping(cls: type[P], obj: Mapping[str, Any] | None) -> P:
        """Validate ``obj``'s keys (unknown or missing ones) and build the parameters."""
        obj = dict(obj or {})
        names = [f.name for f in fields(cls) if f.init]
        unknown = sorted(set(obj) - set(names))
        if unknown:
            allowed = f"is not a parameter (allowed: {', '.join(names)})"
            raise ParamError(unknown[0], allowed, kind="unknown")
        for f in fields(cls):
            if f.init and f.name not in obj and f.default is MISSING:
                raise ParamError(f.name, "is required", kind="missing")
        return cls(**obj)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for summaries and sidecars)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_json_object(option: str, text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Parse ``text`` as a JSON object (``None`` or ``""`` gives ``{}``; a mapping is copied)."""
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    try:
        value = json.loads(text, parse_constant=_reject_constant(option))
    except UsageError:
        raise
    except ValueError as e:
        raise UsageError(f"{option}: malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option}: expected a JSON object like '{{\"key\": 1}}'")
    return value


def _reject_constant(option: str):
    def reject(name: str) -> float:
        raise UsageError(f"{option}: {name} is not allowed (numbers must be finite)")

    return reject


# ------------------------------------------------------------------------ generation


@dataclass(frozen=True)
class NormalParams(Params):
    """``--type normal``: mean and standard deviation."""

    mean: float = param(0.0, number())
    std: float = param(1.0, number(minimum=0))


@dataclass(frozen=True)
class UniformParams(Params):
    """``--type uniform``: the interval ``[low, high)``."""

    low: float = param(0.0, number())
    high: float = param(1.0, number())

    def check(self) -> None:
        """``low`` must be below ``high``."""
        if not self.low < self.high:
            raise ParamError("low", f"({self.low:g}) must be less than 'high' ({self.high:g})")


DISTRIBUTIONS: dict[str, type[Params]] = {"normal": NormalParams, "uniform": UniformParams}


@dataclass(frozen=True)
class Distribution:
    """The distribution of the unit draws and its parameters."""

    type: str
    params: NormalParams | UniformParams

    @property
    def loc_scale(self) -> tuple[float, float]:
        """Affine map applied to the unit draw (standard normal or U[0, 1))."""
        p = self.params
        if isinstance(p, NormalParams):
            return p.mean, p.std
        return p.low, p.high - p.low

    @property
    def std(self) -> float:
        """Standard deviation of the distribution (anomaly magnitudes are in these units)."""
        p = self.params
        if isinstance(p, NormalParams):
            return p.std
        return (p.high - p.low) / math.sqrt(12.0)


@dataclass(frozen=True, kw_only=True)
class Seasonality(Params):
    """``amplitude * sin(2 pi (i mod period) / period + phase)``."""

    amplitude: float = param(1.0, number())
    period: float = param(rule=number(minimum=2))
    phase: float = param(0.0, number())

    @property
    def integer_period(self) -> int | None:
        """The period as an int when it is whole (a one-period table applies), else None."""
        return int(self.period) if float(self.period).is_integer() else None


@dataclass(frozen=True, kw_only=True)
class Trend(Params):
    """``slope * i``."""

    slope: float = param(rule=number())


@dataclass(frozen=True, kw_only=True)
class Anomalies(Params):
    """Spikes of ``magnitude`` standard deviations at a ``rate`` per sample."""

    rate: float = param(rule=number())
    magnitude: float = param(6.0, number())

    def check(self) -> None:
        """``rate`` is a probability."""
        if not 0 <= self.rate <= 1:
            raise ParamError("rate", f"must be in [0, 1], not {self.rate:g}")


@dataclass(frozen=True)
class GenerationParams:
    """Everything the bytes of a stream depend on (besides N and the dtype)."""

    seed: int
    distribution: Distribution
    seasonality: Seasonality | tuple[Seasonality, ...] | None  # a tuple: several components
    trend: Trend | None
    anomalies: Anomalies | None

    def to_json(self) -> dict[str, Any]:
        """The parameters as the sidecar records them."""

        def part(p: Params | tuple[Params, ...] | None) -> Any:
            if isinstance(p, tuple):
                return [q.to_dict() for q in p]
            return p.to_dict() if p is not None else None

        return {
            "seed": self.seed,
            "type": self.distribution.type,
            "params": self.distribution.params.to_dict(),
            "seasonality": part(self.seasonality),
            "trend": part(self.trend),
            "anomalies": part(self.anomalies),
        }


def _part(cls: type[P], label: str, text: Any, cli: bool) -> P | None:
    """One JSON-or-mapping option built into ``cls``; empty gives ``None``."""
    option = f"--{label}" if cli else label
    obj = parse_json_object(option, text)
    if not obj:
        return None
    if not cli:
        return cls.from_mapping(obj)
    with for_option(option):
        return cls.from_mapping(obj)


def _seasonality(text: Any, cli: bool) -> Seasonality | tuple[Seasonality, ...] | None:
    """``--seasonality``: one JSON object, or a list of them (several seasonal components).

    A list of one object is the same as the object; an empty list is no seasonality.
    """
    option = "--seasonality" if cli else "seasonality"
    value = text
    if isinstance(text, str) and text.strip().startswith("["):
        try:
            value = json.loads(text, parse_constant=_reject_constant(option))
        except UsageError:
            raise
        except ValueError as e:
            raise UsageError(f"{option}: malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, (list, tuple)):
        return _part(Seasonality, "seasonality", text, cli)
    parts = []
    for k, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise UsageError(f"{option}[{k}]: expected a JSON object like '{{\"period\": 24}}'")
        if cli:
            with for_option(f"{option}[{k}]"):
                parts.append(Seasonality.from_mapping(item))
        else:
            parts.append(Seasonality.from_mapping(item))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else tuple(parts)


def generation_params(
    *,
    seed: Any = 42,
    type: str = "normal",
    params: Any = None,
    seasonality: Any = None,
    trend: Any = None,
    anomalies: Any = None,
    cli: bool = False,
) -> GenerationParams:
    """Validate the generation options (JSON strings or mappings) into one object.

    Errors name the Python arguments (``std must be >= 0, not -1``), or with
    ``cli=True`` the producer's flags (``--params: 'std' must be >= 0, not -1``).
    """
    if type not in DISTRIBUTIONS:
        choices = ", ".join(DISTRIBUTIONS)
        if cli:
            raise UsageError(f"--type: unknown distribution '{type}' (choose from {choices})")
        raise ParamError("type", f"must be one of {choices}, not {type!r}")
    dist = _part(DISTRIBUTIONS[type], "params", params, cli) or DISTRIBUTIONS[type]()
    return GenerationParams(
        seed=non_negative_int("--seed" if cli else "seed", seed),
        distribution=Distribution(type, dist),
        seasonality=_seasonality(seasonality, cli),
        trend=_part(Trend, "trend", trend, cli),
        anomalies=_part(Anomalies, "anomalies", anomalies, cli),
    )


# ------------------------------------------------------------------ scalar options


def positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """An integer argument or flag (``n``, ``--num_samples``), >= ``minimum``.

    Strings as a command line gives them are accepted: ``"1_000"``, ``"1e9"``.
    Errors name ``name`` as given.
    """
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise ParamTypeError(name, f"must be an integer, not {value!r}") from None
    return integer(minimum)(name, value)


def non_negative_int(name: str, value: Any) -> int:
    """A strict non-negative integer such as a seed."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParamError(name, f"must be a non-negative integer, not {value!r}")
    return value


def positive_float(name: str, value: Any) -> float:
    """A strictly positive, finite number such as ``--timeout``."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ParamTypeError(name, f"must be a number, not {value!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise ParamError(name, f"must be a finite number > 0, not {value}")
    return f
