"""The detectors by ``--type`` name, and the one way to build one."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from consumer.detectors.base import Detector, SeriesInfo
from shared.errors import UsageError
from shared.params import ParamError, Params, ParamTypeError, for_option, parse_json_object

# name -> "module:class". A detector's module (its kernels, numba) is imported only when
# that detector is built: a zscore run does not load the STL kernels.
DETECTORS: dict[str, str] = {
    "zscore": "consumer.detectors.zscore:ZScoreDetector",
    "stl": "consumer.detectors.stl:StlDetector",
    "likelihood": "consumer.detectors.likelihood:LikelihoodDetector",
}


def detector_class(type: str) -> type[Detector]:
    """The class of the detector named ``type`` (a key of ``DETECTORS``), imported now."""
    module, _, name = DETECTORS[type].partition(":")
    return getattr(importlib.import_module(module), name)


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
    cls = detector_class(type)
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
