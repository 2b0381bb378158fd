"""JSON parameters parsed into validated dataclasses, with one error-message style.

Every message names the option and the problem: ``--params: unknown key 'sd'
(allowed: mean, std)``.  Errors are ``UsageError`` (exit status 2).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from shared.errors import UsageError

_REQUIRED = object()


def parse_json_object(option: str, text: str | dict[str, Any] | None) -> dict[str, Any]:
    """Parse ``text`` as a JSON object (``None`` or ``""`` gives ``{}``)."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
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


def take(
    option: str, obj: dict[str, Any], spec: dict[str, Any], kinds: dict[str, type] | None = None
) -> dict[str, Any]:
    """Check keys against ``spec`` (name -> default or ``_REQUIRED``) and number types."""
    unknown = sorted(set(obj) - set(spec))
    if unknown:
        allowed = ", ".join(spec)
        raise UsageError(f"{option}: unknown key '{unknown[0]}' (allowed: {allowed})")
    out: dict[str, Any] = {}
    kinds = kinds or {}
    for key, default in spec.items():
        if key not in obj:
            if default is _REQUIRED:
                raise UsageError(f"{option}: missing required key '{key}'")
            out[key] = default
            continue
        value = obj[key]
        kind = kinds.get(key, float)
        if kind is bool:
            if not isinstance(value, bool):
                raise UsageError(f"{option}: '{key}' must be true or false, not {value!r}")
        elif kind is int:
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or value != int(value)
            ):
                raise UsageError(f"{option}: '{key}' must be an integer, not {value!r}")
            value = int(value)
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{option}: '{key}' must be a number, not {value!r}")
            if not math.isfinite(value):
                raise UsageError(f"{option}: '{key}' must be finite, not {value!r}")
            value = float(value)
        elif kind is str:
            if not isinstance(value, str):
                raise UsageError(f"{option}: '{key}' must be a string, not {value!r}")
        out[key] = value
    return out


REQUIRED = _REQUIRED

# --------------------------------------------------------------------------- generation

DISTRIBUTIONS = {
    "normal": {"mean": 0.0, "std": 1.0},
    "uniform": {"low": 0.0, "high": 1.0},
}


@dataclass(frozen=True)
class Distribution:
    type: str
    params: dict[str, float]

    @property
    def loc_scale(self) -> tuple[float, float]:
        """Affine map applied to the unit draw (standard normal or U[0, 1))."""
        if self.type == "normal":
            return self.params["mean"], self.params["std"]
        return self.params["low"], self.params["high"] - self.params["low"]

    @property
    def std(self) -> float:
        """Standard deviation of the distribution (anomaly magnitudes are in these units)."""
        if self.type == "normal":
            return self.params["std"]
        return (self.params["high"] - self.params["low"]) / math.sqrt(12.0)


@dataclass(frozen=True)
class Seasonality:
    amplitude: float
    period: float
    phase: float

    @property
    def integer_period(self) -> int | None:
        return int(self.period) if float(self.period).is_integer() else None


@dataclass(frozen=True)
class Trend:
    slope: float


@dataclass(frozen=True)
class Anomalies:
    rate: float
    magnitude: float


@dataclass(frozen=True)
class GenerationParams:
    """Everything the bytes of a stream depend on (besides N and the dtype)."""

    seed: int
    distribution: Distribution
    seasonality: Seasonality | None
    trend: Trend | None
    anomalies: Anomalies | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "type": self.distribution.type,
            "params": dict(self.distribution.params),
            "seasonality": asdict(self.seasonality) if self.seasonality else None,
            "trend": asdict(self.trend) if self.trend else None,
            "anomalies": asdict(self.anomalies) if self.anomalies else None,
        }


def parse_distribution(type_: str, params: Any) -> Distribution:
    if type_ not in DISTRIBUTIONS:
        raise UsageError(
            f"--type: unknown distribution '{type_}' (choose from {', '.join(DISTRIBUTIONS)})"
        )
    p = take("--params", parse_json_object("--params", params), DISTRIBUTIONS[type_])
    if type_ == "normal" and p["std"] < 0:
        raise UsageError(f"--params: 'std' must be >= 0, not {p['std']:g}")
    if type_ == "uniform" and not p["low"] < p["high"]:
        raise UsageError(f"--params: 'low' ({p['low']:g}) must be less than 'high' ({p['high']:g})")
    return Distribution(type_, p)


def parse_seasonality(text: Any) -> Seasonality | None:
    obj = parse_json_object("--seasonality", text)
    if not obj:
        return None
    p = take("--seasonality", obj, {"amplitude": 1.0, "period": REQUIRED, "phase": 0.0})
    if p["period"] < 2:
        raise UsageError(f"--seasonality: 'period' must be >= 2, not {p['period']:g}")
    return Seasonality(**p)


def parse_trend(text: Any) -> Trend | None:
    obj = parse_json_object("--trend", text)
    if not obj:
        return None
    return Trend(**take("--trend", obj, {"slope": REQUIRED}))


def parse_anomalies(text: Any) -> Anomalies | None:
    obj = parse_json_object("--anomalies", text)
    if not obj:
        return None
    p = take("--anomalies", obj, {"rate": REQUIRED, "magnitude": 6.0})
    if not 0 <= p["rate"] <= 1:
        raise UsageError(f"--anomalies: 'rate' must be in [0, 1], not {p['rate']:g}")
    return Anomalies(**p)


def parse_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, not {seed!r}")
    return seed


def generation_params(
    *,
    seed: Any = 42,
    type: str = "normal",
    params: Any = None,
    seasonality: Any = None,
    trend: Any = None,
    anomalies: Any = None,
) -> GenerationParams:
    """Validate the generation options (JSON strings or dicts) into one object."""
    return GenerationParams(
        seed=parse_seed(seed),
        distribution=parse_distribution(type, params),
        seasonality=parse_seasonality(seasonality),
        trend=parse_trend(trend),
        anomalies=parse_anomalies(anomalies),
    )


def positive_int(option: str, value: Any, *, minimum: int = 1) -> int:
    """Validate an integer option such as ``--num_samples`` or ``--threads``."""
    if isinstance(value, bool):
        raise UsageError(f"{option} must be an integer, not {value!r}")
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            value = int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                raise UsageError(f"{option} must be an integer, not {value!r}") from None
            if not math.isfinite(f) or not f.is_integer():
                raise UsageError(f"{option} must be an integer, not {value!r}") from None
            value = int(f)
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise UsageError(f"{option} must be an integer, not {value!r}")
        value = int(value)
    if not isinstance(value, int):
        raise UsageError(f"{option} must be an integer, not {value!r}")
    if value < minimum:
        raise UsageError(f"{option} must be >= {minimum}, not {value}")
    return value


def positive_float(option: str, value: Any) -> float:
    """Validate a strictly positive, finite number option such as ``--timeout``."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{option} must be a number, not {value!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise UsageError(f"{option} must be a finite number > 0, not {value}")
    return f
