"""Block generation: the only place that decides what the bytes of a stream are.

Samples are produced in fixed RNG blocks of ``BLOCK_SIZE`` samples.  Block ``b``
(samples ``[b*BLOCK_SIZE, (b+1)*BLOCK_SIZE)``) takes three 64-bit keys from
``SeedSequence(seed, spawn_key=(b,))``: its unit variates are SplitMix64 draws
keyed by the first (a ziggurat for normals, see ``producer.sampling``), the
normal sampler's rare rejections use sub-streams of the second, and its
anomalies are geometric gaps drawn from the third.  Nothing else is random, so
a sample's value depends only on (seed, parameters, its index): not on threads,
chunk size, write order or restarts.

Value of sample ``i`` (computed in float64, then stored in the stream dtype)::

    x[i] = loc + scale * u[i]                          # u: standard normal or U[0, 1)
         + amplitude * sin(2*pi * (i mod period) / period + phase)   # seasonality
         + slope * i                                    # trend
         + sign * magnitude * std                       # only at anomaly positions

For an integer period the sine comes from a table of whole periods, so no ``sin`` is
evaluated per sample.  The block size, generator and this formula are recorded
in the sidecar (``generation.algorithm``); changing any of them changes every
file's bytes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np
from numba import njit

from producer.sampling import (
    _SIGNED_LAYER,
    _TWO_M53,
    _U1,
    _U11,
    GOLDEN,
    ZIGGURAT_R,
    _anomaly_counts,
    _anomaly_positions,
    _mix,
    _normal_second_try,
    _normal_slow,
    block_keys,
    block_keys_range,
    signed_ziggurat,
)
from shared.params import GenerationParams, ParamError, generation_params

BLOCK_SIZE = 1 << 16
# Smallest producer chunk (samples): every chunk costs a sidecar entry and a commit,
# which below this size cost more than generating its samples (README, Producer).
MIN_CHUNK_SIZE = 4096
BIT_GENERATOR = "SplitMix64"
# 1: numpy SFC64 Generator per block, binomial anomaly count.
# 2: SplitMix64 counter draws + 256-layer ziggurat, geometric-gap anomalies.
ALGORITHM = 2  # bump when the formula or the RNG keying changes

_ZIGGURAT = signed_ziggurat()
_RUN = 2048  # samples per run of the draw loop (its list of misses stays in L1)


@njit(cache=True, nogil=True)
def _value(z, form, table, j, i):
    """Sample ``i`` (before any spike) from its unit variate ``z``, in the module's order.

    ``form`` is (loc, scale, period, amplitude, phase, slope).  The seasonal
    term is ``table[j]``, or without a table (``None``) the ``sin`` of ``i mod
    period`` (the phase keeps its precision at large i) when the amplitude is
    not 0.  An absent term is not added as 0.0, which would turn a -0.0 into
    +0.0.  The ``None`` table is a type: numba compiles one kernel with the
    table and one without (dead-branch pruning), so the table's loop tests no
    flag per sample; the amplitude and slope tests are loop-invariant, and
    LLVM hoists them out (loop unswitching).
    """
    loc, scale, period, amplitude, phase, slope = form
    y = loc + scale * z
    if table is not None:
        y = y + table[j]
    elif amplitude != 0.0:
        x = float(i)
        ph = x - period * math.floor(x / period)
        y = y + amplitude * math.sin(2.0 * math.pi * ph / period + phase)
    if slope != 0.0:
        y = y + slope * float(i)
    return y


@njit(cache=True, nogil=True)
def _draw_run(out, c, zig, form, table, j, i0, missed):
    """Fill ``out`` with fast-path samples; list the ziggurat misses, return their count.

    ``out[u]`` is sample ``i0 + u``: draw counter ``c + (u + 1) * GOLDEN``, table
    entry ``table[j + u]`` (the run must not wrap it).  The loop has no
    data-dependent branch: every normal sample takes the fast path (one
    multiply by the signed table, ``zig``; ``None`` for uniform draws, which
    never miss), its position is written to ``missed`` unconditionally and the
    count advances only on a miss (about 1.5%), so the CPU never mispredicts.
    Unsigned indices spare numba's negative-index test.
    """
    k = 0
    if zig is not None:
        ws, ks, _ = zig
    for u in range(out.shape[0]):
        c += GOLDEN
        r = _mix(c)
        if zig is None:
            z = float(np.int64(r >> _U11)) * _TWO_M53
        else:
            h = r >> _U11
            z = float(np.int64(h)) * ws[r & _SIGNED_LAYER]
            missed[k] = u
            k += h >= ks[r & _SIGNED_LAYER]
        out[u] = _value(z, form, table, j + np.uint64(u), i0 + u)
    return k


@njit(cache=True, nogil=True)
def _redo_misses(out, c, t0, k1, zig, form, table, j, i0, missed, k):
    """Redo the ``k`` samples ``_draw_run`` (same arguments) listed as misses.

    ``_normal_second_try`` finishes about 98% of them in straight-line code, so
    consecutive misses overlap in the pipeline; ``_normal_slow`` the rest.  A
    sample is a pure function of its position, so redoing it later gives the
    same bits.
    """
    ws, ks, f = zig
    left = 0
    for q in range(k):
        u = missed[q]
        r = _mix(c + np.uint64(u + 1) * GOLDEN)
        z, done = _normal_second_try(r, k1, t0 + u, ws, ks, f)
        out[u] = _value(z, form, table, j + np.uint64(u), i0 + u)
        missed[left] = u  # no call in this loop: the rest are listed for the next
        left += not done
    for q in range(left):
        u = missed[q]
        r = _mix(c + np.uint64(u + 1) * GOLDEN)
        z = _normal_slow(r, k1, t0 + u, ws, ks, f, ZIGGURAT_R)
        out[u] = _value(z, form, table, j + np.uint64(u), i0 + u)


@njit(cache=True, nogil=True)
def _add_spikes(out, first, t0, k0, k1, zig, form, table, pos, spike):
    """Recompute the samples at ``pos`` (relative to ``out``) with their spike added.

    The spike is the formula's last term, added in float64 before the store, so
    a float32 stream is rounded once, as if it had been added in the main loop.
    """
    m = table.shape[0] if table is not None else 1
    for q in range(pos.shape[0]):
        p = pos[q]
        t = t0 + p
        r = _mix(k0 + (np.uint64(t) + _U1) * GOLDEN)
        if zig is None:
            z = float(np.int64(r >> _U11)) * _TWO_M53
        else:
            ws, ks, f = zig
            h = r >> _U11
            if h < ks[r & _SIGNED_LAYER]:
                z = float(np.int64(h)) * ws[r & _SIGNED_LAYER]
            else:
                z = _normal_slow(r, k1, t, ws, ks, f, ZIGGURAT_R)
        j = np.uint64((first + p) % m)
        out[p] = _value(z, form, table, j, first + p) + spike[q]


@njit(cache=True, nogil=True)
def _fill_block(out, first, t0, k0, k1, zig, form, table, pos, spike):
    """Draw, transform and store (part of) one RNG block.

    ``out[t]`` is sample ``first + t``, block-relative position ``t0 + t``.
    Draws are counter-based (draw ``u`` is ``mix(k0 + (u + 1) * GOLDEN)``), so
    starting the counter at ``t0`` gives exactly the block's samples from ``t0``
    on: a chunk that begins inside a block needs no scratch copy of the block's
    head.  The samples are made in runs that end where the seasonal ``table``
    (``None``: none) wraps, so it is read straight on (no modulo, no wrap test);
    each run's ziggurat misses are redone right after it, while in cache, and
    the anomalies (``pos``: sorted positions relative to ``out``; ``spike``:
    their offsets) last.  ``zig``: the signed ziggurat, ``None`` for uniform
    draws; ``form``: see ``_value``.
    """
    n = out.shape[0]
    m = table.shape[0] if table is not None else _RUN
    missed = np.empty(min(n, _RUN), np.int64)
    a = 0
    while a < n:
        j = (first + a) % m
        b = min(n, a + min(_RUN, m - j))
        c = k0 + np.uint64(t0 + a) * GOLDEN
        run = out[a:b]
        k = _draw_run(run, c, zig, form, table, np.uint64(j), first + a, missed)
        if zig is not None:
            _redo_misses(run, c, t0 + a, k1, zig, form, table, np.uint64(j), first + a, missed, k)
        a = b
    _add_spikes(out, first, t0, k0, k1, zig, form, table, pos, spike)


MAX_TABLE = 1 << 24  # samples of a several-component seasonal table (128 MiB)


def seasonal_table(parts: tuple) -> np.ndarray:
    """One period of the sum of several seasonal components (integer periods).

    ``table[j] = sum_c amplitude_c * sin(2 pi (j mod period_c) / period_c + phase_c)``,
    summed in the order given, for ``j < lcm(periods)``; sample ``i`` adds
    ``table[i mod lcm]``.
    """
    periods = [p.integer_period for p in parts]
    if any(p is None for p in periods):
        raise ParamError(
            "seasonality",
            "with several components needs integer periods, got "
            + ", ".join(f"{p.period:g}" for p in parts),
        )
    m = math.lcm(*periods)
    if m > MAX_TABLE:
        raise ParamError(
            "seasonality",
            f"periods {periods} repeat every {m} samples, more than {MAX_TABLE}: "
            "choose periods with a smaller common multiple",
        )
    j = np.arange(m, dtype=np.int64)
    table = np.zeros(m)
    for p, q in zip(parts, periods, strict=True):
        table += p.amplitude * np.sin(2.0 * np.pi * (j % q).astype(np.float64) / q + p.phase)
    return table


class BlockGenerator:
    """Produces any range of a stream's samples and labels (RNG blocks stay internal)."""

    def __init__(self, params: GenerationParams, num_samples: int, dtype: str = "float64") -> None:
        self.params = params
        self.num_samples = num_samples
        self.dtype = np.dtype(dtype)
        self.loc, self.scale = params.distribution.loc_scale
        s = params.seasonality
        if isinstance(s, tuple):
            # Several components: one table over the least common multiple of the periods.
            self.amplitude, self.period, self.phase = 0.0, 0.0, 0.0
            self.table = seasonal_table(s)
        else:
            self.amplitude = s.amplitude if s else 0.0
            self.period = float(s.period) if s else 0.0
            self.phase = s.phase if s else 0.0
            if s is not None and s.integer_period is not None:
                j = np.arange(s.integer_period, dtype=np.float64)
                self.table = s.amplitude * np.sin(2.0 * np.pi * j / s.integer_period + s.phase)
            else:
                self.table = np.empty(0, np.float64)
        if 0 < len(self.table) < _RUN:
            # Whole periods, at least a run long: the kernel's runs end where the table wraps.
            self.table = np.tile(self.table, -(-_RUN // len(self.table)))
        self.slope = params.trend.slope if params.trend else 0.0
        self.num_blocks = -(-num_samples // BLOCK_SIZE)
        self.normal = params.distribution.type == "normal"
        # The fill kernel's arguments; a None (uniform draws, no table) is a type to numba.
        self._kernel_args = (
            _ZIGGURAT if self.normal else None,
            (self.loc, self.scale, self.period, self.amplitude, self.phase, self.slope),
            self.table if len(self.table) else None,
        )
        a = params.anomalies
        # log(1 - rate): the geometric gaps' denominator; None when there are no anomalies
        self.log1m_rate = None
        if a is not None and a.rate > 0:
            self.log1m_rate = math.log1p(-a.rate) if a.rate < 1 else -math.inf
        self.spike_size = a.magnitude * params.distribution.std if a is not None else 0.0
        self._label_counts: np.ndarray | None = None
        self._keys: np.ndarray | None = None  # every block's keys, once label_counts ran
        self._label_starts: np.ndarray | None = None
        # A block's keys and anomalies, drawn once for the several chunks that share it
        # (chunks smaller than a block, or starting inside one); thread-safe.
        self._block = functools.lru_cache(maxsize=256)(self._draw_block)

    def warm_up(self) -> None:
        """Load the compiled kernels (numba cache) now rather than inside a timed run."""
        keys = block_keys(self.params.seed, 0)
        self._fill(np.empty(1, self.dtype), 0, 0, keys, *self._no_anomalies())
        if self.log1m_rate is not None:
            self.block_anomalies(0)

    @staticmethod
    def _no_anomalies() -> tuple[np.ndarray, np.ndarray]:
        return np.empty(0, np.int64), np.empty(0, np.float64)

    def _fill(self, view, first, t0, keys, pos, spike) -> None:
        _fill_block(view, first, t0, keys[0], keys[1], *self._kernel_args, pos, spike)

    # -- anomalies ---------------------------------------------------------------------

    def _limit(self, block: int) -> int:
        return min(BLOCK_SIZE, self.num_samples - block * BLOCK_SIZE)

    def block_anomalies(
        self, block: int, keys: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sorted block-relative positions and spike offsets of block ``block``.

        Positions are drawn over the full block size, then clipped to the
        stream's end, so a shorter stream is a prefix of a longer one.
        """
        if self.log1m_rate is None:
            return self._no_anomalies()
        ka = (block_keys(self.params.seed, block) if keys is None else keys)[2]
        limit = self._limit(block)
        pos, negative = np.empty(0, np.int64), np.empty(0, np.bool_)
        k = _anomaly_positions(ka, self.log1m_rate, limit, BLOCK_SIZE, pos, negative)
        pos, negative = np.empty(k, np.int64), np.empty(k, np.bool_)
        _anomaly_positions(ka, self.log1m_rate, limit, BLOCK_SIZE, pos, negative)
        spike = np.where(negative, -self.spike_size, self.spike_size)
        return pos, spike

    def _draw_block(self, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keys, anomaly positions and spike offsets of ``block`` (cached by ``_block``)."""
        if self._keys is not None:
            keys = self._keys[block]
        else:
            keys = block_keys(self.params.seed, block)
        return (keys, *self.block_anomalies(block, keys))

    def label_counts(self) -> np.ndarray:
        """Number of anomalies in every block (drawn from the anomaly keys only).

        Computed once and kept: the producer needs it both for its space check and
        to lay out the labels file.  The blocks' keys (``block_keys_range``: 9 ms for
        the 152588 blocks of 1e10 samples, where numpy's ``SeedSequence`` objects took
        2.5 s) are kept too (24 bytes a block), so generating a block does not derive
        them again.
        """
        if self._label_counts is None:
            counts = np.zeros(self.num_blocks, np.int64)
            if self.log1m_rate is not None:
                seed = self.params.seed
                keys = block_keys_range(seed, 0, self.num_blocks)
                limits = np.array([self._limit(b) for b in range(self.num_blocks)], np.int64)
                ka = np.ascontiguousarray(keys[:, 2])
                _anomaly_counts(ka, self.log1m_rate, limits, BLOCK_SIZE, counts)
                self._keys = keys
            self._label_counts = counts
        return self._label_counts

    # -- samples -----------------------------------------------------------------------

    def blocks(
        self, start: int, stop: int, out: np.ndarray, reuse: bool = False
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Generate [start, stop) block by block: yield (first index, values, anomaly indices).

        Each piece is the part of one RNG block that lies in ``[start, stop)``:
        any range, aligned or not, gives exactly the samples of the whole stream
        there.  With ``reuse`` every piece is written to the front of ``out`` (one
        block long), so a caller can checksum and write it while it is still in
        cache; otherwise pieces land at their place in ``out`` (``stop - start`` long).
        """
        first = start
        while first < stop:
            b, t0 = divmod(first, BLOCK_SIZE)
            n = min(BLOCK_SIZE - t0, stop - first)
            view = out[:n] if reuse else out[first - start : first - start + n]
            keys, pos, spike = self._block(b)
            if len(pos) and (t0 or n < BLOCK_SIZE):  # the block's anomalies in this piece
                i, j = np.searchsorted(pos, (t0, t0 + n))
                pos, spike = pos[i:j] - t0, spike[i:j]
            self._fill(view, first, t0, keys, pos, spike)
            yield first, view, pos + first
            first += n

    def fill(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Write samples [start, stop) into ``out``; return their absolute anomaly indices."""
        labels = [pos for _, _, pos in self.blocks(start, stop, out) if len(pos)]
        return np.concatenate(labels) if labels else np.empty(0, np.int64)

    def labels_before(self, sample: int) -> int:
        """Number of anomalies at indices < ``sample``: where its labels start in the file.

        Whole blocks come from the per-block counts; a ``sample`` inside a block
        also counts that block's anomalies before it (one anomaly draw).
        """
        if self._label_starts is None:
            self._label_starts = np.concatenate([[0], np.cumsum(self.label_counts())])
        b, t = divmod(sample, BLOCK_SIZE)
        if b >= self.num_blocks:
            return int(self._label_starts[-1])
        before = int(self._label_starts[b])
        if t:
            before += int(np.searchsorted(self._block(b)[1], t))
        return before


def generate(
    n: int,
    seed: int = 42,
    type: str = "normal",
    params: dict | str | None = None,
    seasonality: dict | str | None = None,
    trend: dict | str | None = None,
    anomalies: dict | str | None = None,
    dtype: str = "float64",
    threads: int = 1,
) -> np.ndarray:
    """The ``n`` samples that ``python -m producer`` writes for the same arguments, in memory.

    Every value is a pure function of (seed, RNG block, position), so the result
    does not depend on ``threads`` (block-aligned slices filled in parallel).

    Parameters
    ----------
    n : int
        Number of samples (>= 1).
    seed : int
        Non-negative seed; block ``b`` draws from ``SeedSequence(seed, spawn_key=(b,))``.
    type : {"normal", "uniform"}
        Distribution of the unit draws.
    params : dict or JSON str, optional
        ``normal``: ``mean`` (0), ``std`` (1); ``uniform``: ``low`` (0), ``high`` (1).
    seasonality, trend, anomalies : dict or JSON str, optional
        As ``--seasonality``, ``--trend`` and ``--anomalies`` (see the README).
    dtype : {"float64", "float32"}
        Sample type (float32 values are the float64 values rounded).
    threads : int
        Threads that fill the array.

    Returns
    -------
    numpy.ndarray
        The samples, bit-identical to the stream file's.

    Raises
    ------
    ValueError, TypeError
        A bad argument, named as written here (``std must be >= 0, not -1``).

    Examples
    --------
    >>> import producer
    >>> x = producer.generate(1000, seed=1, seasonality={"amplitude": 2, "period": 50})
    >>> x.shape, x.dtype
    ((1000,), dtype('float64'))
    """
    values, _ = generate_with_labels(
        n,
        seed=seed,
        type=type,
        params=params,
        seasonality=seasonality,
        trend=trend,
        anomalies=anomalies,
        dtype=dtype,
        threads=threads,
    )
    return values


def generate_with_labels(
    n: int,
    seed: int = 42,
    type: str = "normal",
    params: dict | str | None = None,
    seasonality: dict | str | None = None,
    trend: dict | str | None = None,
    anomalies: dict | str | None = None,
    dtype: str = "float64",
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`generate`, and also the sorted int64 indices of the injected anomalies.

    Parameters
    ----------
    n, seed, type, params, seasonality, trend, anomalies, dtype, threads
        As for :func:`generate`.

    Returns
    -------
    values : numpy.ndarray
        The samples.
    labels : numpy.ndarray
        Sorted int64 anomaly indices (what ``<stem>.labels.npy`` holds); empty
        without ``anomalies``.

    Examples
    --------
    >>> import producer
    >>> x, labels = producer.generate_with_labels(100_000, anomalies={"rate": 1e-3})
    >>> bool((abs(x[labels]) > 3).all())
    True
    """
    from shared.params import ParamError, positive_int
    from shared.stream import SUPPORTED_DTYPES

    n = positive_int("n", n)
    threads = positive_int("threads", threads)
    if dtype not in SUPPORTED_DTYPES:
        raise ParamError("dtype", f"must be float64 or float32, not {dtype!r}")
    gp = generation_params(
        seed=seed,
        type=type,
        params=params,
        seasonality=seasonality,
        trend=trend,
        anomalies=anomalies,
    )
    gen = BlockGenerator(gp, n, dtype)
    out = np.empty(n, dtype)
    if threads == 1:
        return out, gen.fill(0, n, out)
    from concurrent.futures import ThreadPoolExecutor

    step = max(BLOCK_SIZE, -(-n // (4 * threads * BLOCK_SIZE)) * BLOCK_SIZE)
    starts = range(0, n, step)

    def part(a: int) -> np.ndarray:
        b = min(n, a + step)
        return gen.fill(a, b, out[a:b])

    with ThreadPoolExecutor(threads) as pool:
        labels = list(pool.map(part, starts))
    return out, np.concatenate(labels)
