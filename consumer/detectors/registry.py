"""The detectors by ``--type`` name, and the one way to build one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumer.detectors.base import Detector, SeriesInfo
from consumer.detectors.likelihood import LikelihoodDetector
from consumer.detectors.stl import StlDetector
from consumer.detectors.zscore import ZScoreDetector
from shared.errors import UsageError
from shared.params import ParamError, Params, ParamTypeError, for_option, parse_json_object

DETECTORS: dict[str, type[Detector]] = {
    ZScoreDetector.name: ZScoreDetector,
    StlDetector.name: StlDetector,
    LikelihoodDetector.name: LikelihoodDetector,
}


def make_detector(
    type: str,
    params: str | Mapping[str, Any] | Params | None,
    series: SeriesInfo | int,
    *,
    cli: bool = False,
) -> Detector:
    """Build a validated detector.

    Parameters
    ----------
    type
        A name in ``DETECTORS``.
    params
        The detector's parameters: a JSON object as text, a mapping, or its
        ``Params`` instance.
    series
        What the detector may know of the series (or just its length).
    cli
        Word errors for the command line (``--type``, ``--params: 'window' ...``)
        instead of with the Python argument names.

    Returns
    -------
    Detector
        Raises ``ParamError`` (a ``ValueError``) naming the bad argument.
    """
    if isinstance(series, int):
        series = SeriesInfo(series)
    if type not in DETECTORS:
        names = ", ".join(DETECTORS)
        if cli:
            raise UsageError(f"--type: unknown detector '{type}' (choose from {names})")
        raise ParamError("type", f"must be one of {names}, not {type!r}")
    cls = DETECTORS[type]
    if not cli:
        return cls(_params(cls, params, "params"), series)
    with for_option("--params"):
        return cls(_params(cls, params, "--params"), series)


def _params(cls: type[Detector], params: Any, label: str) -> Params:
    if isinstance(params, Params):
        if not isinstance(params, cls.Params):
            got = type(params).__name__
            raise ParamTypeError("params", f"must be {cls.Params.__name__}, not {got}")
        return params
    return cls.Params.from_mapping(parse_json_object(label, params))
