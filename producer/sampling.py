"""Counter-based random variates for one RNG block: SplitMix64 draws and a ziggurat.

Draw ``n`` of a stream with 64-bit key ``k`` is ``mix(k + (n + 1) * G)``: the
SplitMix64 generator (Steele, Lea & Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014; the output function is Stafford's "Mix13").  Every
draw is a pure function of (key, position), so a block's samples can be
produced in any order, and the loop carries nothing but one addition.

Normals use the 256-layer ziggurat of Marsaglia & Tsang ("The ziggurat method
for generating random variables", J. Stat. Softw. 5(8), 2000) with one 64-bit
word per try: 8 bits pick the layer, 1 bit the sign and 53 bits the abscissa.
About 98.5% of samples leave through the fast path (one multiply, one compare).
The rare rejections draw from a sub-stream keyed by the sample's position, so
they too depend on nothing but (key, position).

The exact specification (tables, order of operations) is in the README
("Generation algorithm"); ``tests/oracles.py`` re-implements it independently.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment: 2^64 / golden ratio, odd
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U8 = np.uint64(8)
_U11 = np.uint64(11)
_U27 = np.uint64(27)
_U30 = np.uint64(30)
_U31 = np.uint64(31)
_LAYER_MASK = np.uint64(0xFF)
_SIGNED_LAYER = np.uint64(0x1FF)  # layer and sign bit: an index into the signed tables
_TWO_M53 = 2.0**-53

ZIGGURAT_R = 3.6541528853610088  # right edge of the base layer (Marsaglia & Tsang, 256 layers)
ZIGGURAT_V = 0.00492867323399  # area of every layer


def ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, K, F): abscissa scale, fast-path bound and density at each layer edge.

    Computed with Python's ``math`` (libm) in a fixed order of operations, so
    every platform with a correctly rounded-enough libm builds the same bits.
    """
    r, v = ZIGGURAT_R, ZIGGURAT_V

    def f(x: float) -> float:
        return math.exp(-0.5 * x * x)

    x = [0.0] * 257
    x[0] = v / f(r)
    x[1] = r
    for i in range(1, 255):
        x[i + 1] = math.sqrt(-2 * math.log(v / x[i] + f(x[i])))
    x[256] = 0.0
    w = np.array([x[i] * _TWO_M53 for i in range(256)], np.float64)
    k = np.array([math.floor(2.0**53 * (x[i + 1] / x[i])) for i in range(256)], np.uint64)
    fx = np.array([f(x[i]) for i in range(256)] + [1.0], np.float64)
    return w, k, fx


def signed_ziggurat() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(WS, KS, F): W and K over 512 entries, the second half with W negated, and F.

    Indexed by the low 9 bits of a draw (layer and sign bit), ``j * WS[d & 511]``
    is ``signed(j * W[i])`` exactly (IEEE products are sign-symmetric), so the
    fast path needs no sign instruction.  The first halves are W and K, which is
    all ``_normal_slow`` reads.
    """
    w, k, f = ziggurat_tables()
    return np.concatenate([w, -w]), np.concatenate([k, k]), f


@njit(cache=True, nogil=True)
def _mix(z):
    """SplitMix64's output function (Stafford Mix13): a bijective 64-bit avalanche."""
    z = (z ^ (z >> _U30)) * _M1
    z = (z ^ (z >> _U27)) * _M2
    return z ^ (z >> _U31)


@njit(cache=True, nogil=True)
def _open01(d):
    """A float64 in (0, 1] from the top 53 bits: safe to take the log of."""
    return float((d >> _U11) + _U1) * _TWO_M53


@njit(cache=True, nogil=True)
def _signed(x, s):
    return -x if s else x


@njit(cache=True, nogil=True)
def _normal_slow(r, k1, t, W, K, F, R):
    """Finish a ziggurat try that missed the fast path (about 1% of samples).

    Marsaglia & Tsang's wedge and tail tests; every further draw comes from the
    sub-stream keyed by ``draw(k1, t)``, so the result depends only on the keys
    and the sample's position.
    """
    c = _mix(k1 + (np.uint64(t) + _U1) * GOLDEN)
    i = np.intp(r & _LAYER_MASK)
    s = (r >> _U8) & _U1
    x = float(r >> _U11) * W[i]
    while True:
        if i == 0:
            # Tail beyond R: exponential proposals, accepted with prob exp(-a^2/2).
            while True:
                c += GOLDEN
                a = -math.log(_open01(_mix(c))) / R
                c += GOLDEN
                e = -math.log(_open01(_mix(c)))
                if e + e > a * a:
                    return _signed(R + a, s)
        c += GOLDEN
        y = F[i] + _open01(_mix(c)) * (F[i + 1] - F[i])
        if y < math.exp(-0.5 * x * x):
            return _signed(x, s)
        c += GOLDEN
        d = _mix(c)
        i = np.intp(d & _LAYER_MASK)
        s = (d >> _U8) & _U1
        j = d >> _U11
        x = float(j) * W[i]
        if j < K[i]:
            return _signed(x, s)


@njit(cache=True, nogil=True)
def _normal_second_try(r, k1, t, ws, ks, f):
    """The first round of ``_normal_slow`` for a fast-path miss, as straight-line code.

    Returns ``(z, done)``: when ``done``, ``z`` is what ``_normal_slow`` returns
    for ``(r, k1, t)``, accepted by the first wedge test or by the fast path of
    the next try (together about 98% of misses); otherwise (the tail layer, or
    both failed) the caller must call ``_normal_slow``, which starts over.  Both
    candidates are drawn up front and ``done`` is combined with ``&``/``|``, so
    there is no loop and no call but ``exp``: a loop over many misses overlaps
    them in the pipeline instead of waiting on each one's chain of draws.
    ``ws``, ``ks``: the signed tables of ``signed_ziggurat`` (the wedge test
    squares the signed ``x``: the same bits).
    """
    i = r & _LAYER_MASK
    x = float(np.int64(r >> _U11)) * ws[r & _SIGNED_LAYER]
    c = _mix(k1 + (np.uint64(t) + _U1) * GOLDEN) + GOLDEN
    y = f[i] + _open01(_mix(c)) * (f[i + _U1] - f[i])
    d = _mix(c + GOLDEN)
    j = d >> _U11
    wedge = y < math.exp(-0.5 * x * x)
    z = x if wedge else float(np.int64(j)) * ws[d & _SIGNED_LAYER]
    return z, (i != _U0) & (wedge | (j < ks[d & _SIGNED_LAYER]))


@njit(cache=True, nogil=True)
def _anomaly_positions(ka, log1m_rate, limit, block_size, pos, negative):
    """Bernoulli(rate) anomalies by geometric gaps: one draw per anomaly, not per sample.

    The gap before the next success of a Bernoulli(rate) sequence is
    ``floor(log(U) / log(1 - rate))`` (inversion of the geometric law, Devroye,
    "Non-Uniform Random Variate Generation", 1986, X.2).  The low bit of the same
    draw gives the sign.  Returns the number of anomalies at block positions
    < ``limit``, and writes the first ``len(pos)`` of them (increasing) into
    ``pos`` and ``negative``: pass empty arrays to count, then arrays of that size.
    """
    n = 0
    p = -1.0
    c = ka
    while True:
        c += GOLDEN
        d = _mix(c)
        # np.floor stays float64 (math.floor is an int64 in numba and overflows for tiny rates)
        g = np.floor(math.log(_open01(d)) / log1m_rate)
        if p + 1.0 + g >= block_size:
            return n
        p = p + 1.0 + g
        if p >= limit:
            return n
        if n < pos.shape[0]:
            pos[n] = np.int64(p)
            negative[n] = (d & _U1) == _U1
        n += 1


@njit(cache=True, nogil=True)
def _anomaly_counts(keys, log1m_rate, limits, block_size, out):
    """Anomaly counts of many blocks (``keys[b]`` with ``limits[b]``)."""
    no_pos = np.empty(0, np.int64)
    no_sign = np.empty(0, np.bool_)
    for b in range(keys.shape[0]):
        out[b] = _anomaly_positions(keys[b], log1m_rate, limits[b], block_size, no_pos, no_sign)


def block_keys(seed: int, block: int) -> np.ndarray:
    """Keys (k0 unit draws, k1 rejection sub-streams, ka anomalies) of RNG block ``block``:
    ``SeedSequence(seed, spawn_key=(block,)).generate_state(3, np.uint64)``."""
    return block_keys_range(seed, block, block + 1)[0]


# numpy's SeedSequence hash constants (O'Neill's seed_seq_fe, pool of four 32-bit words).
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_M32 = 0xFFFFFFFF
_POOL = 4


def uint32_words(n: int) -> np.ndarray:
    """``n >= 0`` as little-endian 32-bit words (``[0]`` for 0), as SeedSequence splits it."""
    words = [0] if n == 0 else []
    while n > 0:
        words.append(n & _M32)
        n >>= 32
    return np.array(words, np.int64)


@njit(cache=True, nogil=True)
def _hashmix(value, h):
    """One word through the running hash ``h``: (mixed word, next ``h``)."""
    value ^= h
    h = (h * _MULT_A) & _M32
    value = (value * h) & _M32
    return value ^ (value >> 16), h


@njit(cache=True, nogil=True)
def _seed_mix(x, y):
    """SeedSequence's mix of two pool words."""
    r = (_MIX_L * x - _MIX_R * y) & _M32
    return r ^ (r >> 16)


@njit(cache=True, nogil=True)
def _block_keys_batch(seed_words, b0, out):
    """``out[i] = block_keys(seed, b0 + i)``: numpy's ``SeedSequence(seed, spawn_key=(b,))
    .generate_state(3, uint64)`` for many blocks, without a Python object per block.

    The algorithm of numpy's ``SeedSequence`` (after O'Neill's ``seed_seq_fe``):
    the seed's words, padded with zeros to the pool size, then the spawn key's
    words, are hashed into a pool of four 32-bit words, and the state words are
    drawn from the pool by a second hash.  All arithmetic is modulo 2^32 (held in
    int64, masked).  ``tests/test_producer.py`` compares it with numpy for many
    seeds and blocks.
    """
    n_seed = max(seed_words.shape[0], _POOL)
    ent = np.zeros(n_seed + 3, np.int64)
    ent[: seed_words.shape[0]] = seed_words
    pool = np.zeros(_POOL, np.int64)
    for i in range(out.shape[0]):
        b, n = b0 + i, n_seed
        ent[n] = b & _M32  # the block's words: one or two (b < 2^63)
        n += 1
        while (b >> 32) > 0:
            b >>= 32
            ent[n] = b & _M32
            n += 1
        h = _INIT_A
        for j in range(_POOL):
            pool[j], h = _hashmix(ent[j] if j < n else 0, h)
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    v, h = _hashmix(pool[src], h)
                    pool[dst] = _seed_mix(pool[dst], v)
        for src in range(_POOL, n):
            for dst in range(_POOL):
                v, h = _hashmix(ent[src], h)
                pool[dst] = _seed_mix(pool[dst], v)
        h = _INIT_B
        for k in range(3):  # three uint64 keys from six words, low word first
            key = np.uint64(0)
            for half in range(2):
                v = pool[(2 * k + half) % _POOL] ^ h
                h = (h * _MULT_B) & _M32
                v = (v * h) & _M32
                v ^= v >> 16
                key |= np.uint64(v) << np.uint64(32 * half)
            out[i, k] = key


def block_keys_range(seed: int, b0: int, b1: int) -> np.ndarray:
    """``block_keys(seed, b)`` for every block ``b0 <= b < b1``, as rows of a (n, 3) array."""
    out = np.empty((max(0, b1 - b0), 3), np.uint64)
    _block_keys_batch(uint32_words(seed), b0, out)
    return out
