"""Block generation: the only place that decides what the bytes of a stream are.

Samples are produced in fixed RNG blocks of ``BLOCK_SIZE`` samples.  Block ``b``
(samples ``[b*BLOCK_SIZE, (b+1)*BLOCK_SIZE)``) draws its unit variates from
``Generator(SFC64(SeedSequence(seed, spawn_key=(b,))))`` and its anomalies from
``Generator(SFC64(SeedSequence(seed, spawn_key=(b, 1))))``.  Nothing else is
random, so a sample's value depends only on (seed, parameters, its index):
not on threads, chunk size, write order or restarts.

Value of sample ``i`` (computed in float64, then stored in the stream dtype)::

    x[i] = loc + scale * u[i]                          # u: standard normal or U[0, 1)
         + amplitude * sin(2*pi * (i mod period) / period + phase)   # seasonality
         + slope * i                                    # trend
         + sign * magnitude * std                       # only at anomaly positions

For an integer period the sine comes from a one-period table, so no ``sin`` is
evaluated per sample.  The block size, bit generator and this formula are
recorded in the sidecar (``generation.algorithm``); changing any of them
changes every file's bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from numba import njit

from shared.params import GenerationParams, generation_params

BLOCK_SIZE = 1 << 16
BIT_GENERATOR = "SFC64"
ALGORITHM = 1  # bump when the formula or the RNG keying changes
ANOMALY_STREAM = 1  # second spawn-key component of the anomaly generator


def _unit_rng(seed: int, block: int) -> np.random.Generator:
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(block,))))


def _anomaly_rng(seed: int, block: int) -> np.random.Generator:
    ss = np.random.SeedSequence(seed, spawn_key=(block, ANOMALY_STREAM))
    return np.random.Generator(np.random.SFC64(ss))


@njit(cache=True, nogil=True)
def _fill_block(u, out, first, loc, scale, table, period, amplitude, phase, slope, pos, spike):
    """Fused affine map + seasonality + trend + spikes over one RNG block.

    One pass while the block is hot in cache.  ``table`` holds one period of the
    seasonal term when the period is an integer (empty otherwise, then the sine
    is evaluated on ``i mod period`` so the phase does not lose precision at large i).
    ``pos`` are sorted block-relative anomaly positions, ``spike`` their offsets.
    """
    n = u.shape[0]
    m = table.shape[0]
    j = first % m if m > 0 else 0
    k = 0
    npos = pos.shape[0]
    two_pi = 2.0 * math.pi
    for t in range(n):
        y = loc + scale * u[t]
        if m > 0:
            y += table[j]
            j += 1
            if j == m:
                j = 0
        elif amplitude != 0.0:
            i = float(first + t)
            r = i - period * math.floor(i / period)  # i mod period, keeps the angle small
            y += amplitude * math.sin(two_pi * r / period + phase)
        if slope != 0.0:
            y += slope * float(first + t)
        if k < npos and pos[k] == t:
            y += spike[k]
            k += 1
        out[t] = y


class BlockGenerator:
    """Produces any block-aligned range of a stream's samples and labels."""

    def __init__(self, params: GenerationParams, num_samples: int, dtype: str = "float64") -> None:
        self.params = params
        self.num_samples = num_samples
        self.dtype = np.dtype(dtype)
        self.loc, self.scale = params.distribution.loc_scale
        s = params.seasonality
        self.amplitude = s.amplitude if s else 0.0
        self.period = float(s.period) if s else 0.0
        self.phase = s.phase if s else 0.0
        if s is not None and s.integer_period is not None:
            j = np.arange(s.integer_period, dtype=np.float64)
            self.table = s.amplitude * np.sin(2.0 * np.pi * j / s.integer_period + s.phase)
        else:
            self.table = np.empty(0, np.float64)
        self.slope = params.trend.slope if params.trend else 0.0
        self.num_blocks = -(-num_samples // BLOCK_SIZE)

    def warm_up(self) -> None:
        """Load the compiled kernel (numba cache) now rather than inside a timed run."""
        e = np.empty(0, np.int64)
        _fill_block(
            np.zeros(1), np.empty(1, self.dtype), 0, self.loc, self.scale, self.table,
            self.period, self.amplitude, self.phase, self.slope, e, np.empty(0, np.float64),
        )

    # -- anomalies ---------------------------------------------------------------------

    def block_anomalies(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted block-relative positions and spike offsets of block ``block``.

        Positions are drawn over the full block size, then clipped to the
        stream's end, so a shorter stream is a prefix of a longer one.
        """
        a = self.params.anomalies
        if a is None or a.rate == 0.0:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        rng = _anomaly_rng(self.params.seed, block)
        k = int(rng.binomial(BLOCK_SIZE, a.rate))
        if k == 0:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        # One uniform draw per position and per sign: far cheaper than choice() for the
        # few anomalies a block holds.  Colliding positions merge into one spike.
        u = rng.random(2 * k)
        pos, first = np.unique((u[:k] * BLOCK_SIZE).astype(np.int64), return_index=True)
        sign = np.where(u[k:][first] < 0.5, -1.0, 1.0)
        spike = sign * (a.magnitude * self.params.distribution.std)
        keep = pos < self.num_samples - block * BLOCK_SIZE
        return pos[keep], spike[keep]

    def label_counts(self) -> np.ndarray:
        """Number of anomalies in every block (drawn from the anomaly streams only)."""
        counts = np.zeros(self.num_blocks, np.int64)
        a = self.params.anomalies
        if a is None or a.rate == 0.0:
            return counts
        for b in range(self.num_blocks):
            counts[b] = len(self.block_anomalies(b)[0])
        return counts

    # -- samples -----------------------------------------------------------------------

    def blocks(
        self, start: int, stop: int, out: np.ndarray, scratch: np.ndarray, reuse: bool = False
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Generate [start, stop) block by block: yield (first index, values, anomaly indices).

        With ``reuse`` every block is written to the front of ``out`` (one block
        long), so a caller can checksum and write it while it is still in cache;
        otherwise block values land at their place in ``out`` (``stop - start`` long).
        ``start`` must be a multiple of ``BLOCK_SIZE``.
        """
        if start % BLOCK_SIZE:
            raise ValueError("start must be block-aligned")
        normal = self.params.distribution.type == "normal"
        in_place = out.dtype == np.float64
        for first in range(start, stop, BLOCK_SIZE):
            b = first // BLOCK_SIZE
            n = min(BLOCK_SIZE, stop - first)
            view = out[:n] if reuse else out[first - start : first - start + n]
            # float64: draw straight into the output and transform in place (half the
            # cache footprint); float32 needs the float64 draws in a scratch buffer.
            u = view if in_place else scratch[:n]
            rng = _unit_rng(self.params.seed, b)
            if normal:
                rng.standard_normal(out=u)
            else:
                rng.random(out=u)
            pos, spike = self.block_anomalies(b)
            if n < BLOCK_SIZE:
                keep = pos < n
                pos, spike = pos[keep], spike[keep]
            _fill_block(
                u, view, first, self.loc, self.scale, self.table, self.period,
                self.amplitude, self.phase, self.slope, pos, spike,
            )
            yield first, view, pos + first

    def fill(self, start: int, stop: int, out: np.ndarray, scratch: np.ndarray | None = None):
        """Write samples [start, stop) into ``out``; return their absolute anomaly indices.

        ``start`` must be a multiple of ``BLOCK_SIZE``; ``scratch`` is an optional
        reusable float64 buffer of ``BLOCK_SIZE`` for the unit draws.
        """
        if scratch is None:
            scratch = np.empty(BLOCK_SIZE, np.float64)
        labels = [pos for _, _, pos in self.blocks(start, stop, out, scratch) if len(pos)]
        return np.concatenate(labels) if labels else np.empty(0, np.int64)


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
    """Return the ``n`` samples the CLI writes for the same arguments (in memory).

    ``threads`` > 1 fills block-aligned slices in parallel (same values).
    """
    values, _ = generate_with_labels(
        n, seed=seed, type=type, params=params, seasonality=seasonality, trend=trend,
        anomalies=anomalies, dtype=dtype, threads=threads,
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
    """Like ``generate`` but also return the sorted int64 anomaly indices."""
    from shared.errors import UsageError
    from shared.params import positive_int
    from shared.stream import SUPPORTED_DTYPES

    n = positive_int("n", n)
    threads = positive_int("threads", threads)
    if dtype not in SUPPORTED_DTYPES:
        raise UsageError(f"--dtype must be float64 or float32, not {dtype!r}")
    gp = generation_params(
        seed=seed, type=type, params=params, seasonality=seasonality, trend=trend,
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
