"""Detectors: one module per detector on one contract.

* ``base``: the contract (:class:`~consumer.detectors.base.Detector`,
  :class:`~consumer.detectors.base.ChunkResult`, :class:`~consumer.detectors.base.SeriesInfo`);
  it imports no numba.
* ``registry``: the ``--type`` names and :func:`~consumer.detectors.registry.make_detector`.
* ``zscore``, ``stl``: the detectors.

Adding a detector means one new module (a ``Params`` dataclass and a
``Detector`` subclass with ``window_for`` and ``process``) and one line in
``registry.DETECTORS``.  This package's ``__init__`` imports nothing, so that
importing the contract does not load the kernels.
"""
