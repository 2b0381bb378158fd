/* Rolling z-score, flags only: the native twin of consumer/kernels/zscore.py.
 *
 * It returns the bits of that module's reference kernel, _rolling_zscore (the
 * flagged indices and their scores), with no numba at run time: a consumer that
 * loads it skips numba's import (about 0.4 s of start-up here).  The operations
 * on every sample are those of _rolling_run, in the same order, so this file
 * must be compiled without value-changing floating-point options
 * (consumer/kernels/zscore_native.py passes -ffp-contract=off and no -ffast-math).
 *
 * Trick (as in the numba lanes kernel): the exact recomputation of the sums at
 * every multiple of `resync` makes those segments independent, so 16 of them
 * advance in lockstep, four to a vector of doubles.  Four steps run with no
 * test; a lane whose test may have flagged in them (rare) or whose sum went
 * non-finite (rarer) redoes the four steps with the scalar operations, so the
 * vector loop never changes a result.  Segments of another length (the first of
 * a stream, a partial last one) and fewer than four left over run the scalar loop.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __AVX__
#include <immintrin.h>
#endif

typedef double v4d __attribute__((vector_size(32)));
typedef long long v4l __attribute__((vector_size(32)));

#define GROUPS 4 /* vectors of 4 lanes in a round: 4 independent dependency chains */

static inline int is_finite(double v) { return v - v == 0.0; } /* as the numba kernel */

/* Bit q set where lane q of m is set. */
static inline int lane_mask(v4l m)
{
#ifdef __AVX__
    return _mm256_movemask_pd((__m256d)m);
#else
    return (m[0] != 0) | (m[1] != 0) << 1 | (m[2] != 0) << 2 | (m[3] != 0) << 3;
#endif
}

/* One lane: the window's shift k, finite count c, shifted sums s1, s2, and 1/c. */
typedef struct {
    double k, s1, s2, inv;
    int64_t c;
} lane_sums;

static inline double inverse(int64_t c) { return c > 0 ? 1.0 / (double)c : 0.0; }

/* _exact_window: shift, count and shifted sums of the finite samples of x[lo:hi]. */
static lane_sums exact_window(const double *x, int64_t lo, int64_t hi)
{
    lane_sums w = {0.0, 0.0, 0.0, 0.0, 0};
    double s = 0.0;
    for (int64_t j = lo; j < hi; j++)
        if (is_finite(x[j])) {
            w.c += 1;
            s += x[j];
        }
    w.k = w.c > 0 ? s / (double)w.c : 0.0;
    for (int64_t j = lo; j < hi; j++)
        if (is_finite(x[j])) {
            double d = x[j] - w.k;
            w.s1 += d;
            w.s2 += d * d;
        }
    w.inv = inverse(w.c);
    return w;
}

/* Where one segment's flags go: its own region of idx/score, and their count. */
typedef struct {
    int64_t g, i, e; /* sums start exactly at g; samples [i, e) are flagged */
    int64_t region, nflag;
} segment;

/* The flag test of _rolling_run for sample j = the lane's v, with its clamp. */
static inline void flag_if_over(double v, int64_t j, const lane_sums *w, double thr2,
                                segment *sg, int64_t *idx, double *score)
{
    double m = w->s1 * w->inv;
    double var = w->s2 * w->inv - m * m;
    if (var < 0.0)
        var = 0.0;
    double d = v - w->k - m;
    if (d * d > thr2 * var && is_finite(v) && w->c >= 2) {
        double sd = sqrt(var);
        int64_t f = sg->region + sg->nflag++;
        idx[f] = j;
        score[f] = sd > 0.0 ? fabs(d) / sd : INFINITY;
    }
}

/* The update of _rolling_run as sample v enters and old leaves the window. */
static inline void slide(double v, double old, lane_sums *w)
{
    double delta = v - old;
    if (is_finite(delta)) { /* both finite (inf - inf and NaN give NaN) */
        w->s1 += delta;
        w->s2 += delta * (v + old - 2.0 * w->k);
        return;
    }
    if (is_finite(v)) {
        w->s1 += v - w->k;
        w->s2 += (v - w->k) * (v - w->k);
        w->c += 1;
    }
    if (is_finite(old)) {
        w->s1 -= old - w->k;
        w->s2 -= (old - w->k) * (old - w->k);
        w->c -= 1;
    }
    w->inv = inverse(w->c);
}

/* _rolling_run without dense scores: absolute samples [lo, hi) of segment sg. */
static void run_scalar(const double *x, int64_t x0, int64_t lo, int64_t hi, int64_t window,
                       lane_sums *w, double thr2, segment *sg, int64_t *idx, double *score)
{
    for (int64_t j = lo; j < hi; j++) {
        double v = x[j - x0];
        if (j >= sg->i)
            flag_if_over(v, j, w, thr2, sg, idx, score);
        slide(v, x[j - window - x0], w);
    }
}

#if defined(__clang__)
#define SHUFFLE(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#else
#define SHUFFLE(a, b, i, j, k, l) __builtin_shuffle(a, b, (v4l){i, j, k, l})
#endif

#define FILL 1024 /* steps per fill: 8 KiB runs of each lane, for the prefetcher */

static inline v4d load4(const double *p)
{
    v4d v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* rows[q] = 4 steps of lane q -> out[u] = step u of the 4 lanes. */
static inline void transpose4(const v4d rows[4], v4d out[4])
{
    v4d t0 = SHUFFLE(rows[0], rows[1], 0, 4, 2, 6), t1 = SHUFFLE(rows[0], rows[1], 1, 5, 3, 7);
    v4d t2 = SHUFFLE(rows[2], rows[3], 0, 4, 2, 6), t3 = SHUFFLE(rows[2], rows[3], 1, 5, 3, 7);
    out[0] = SHUFFLE(t0, t2, 0, 1, 4, 5);
    out[1] = SHUFFLE(t1, t3, 0, 1, 4, 5);
    out[2] = SHUFFLE(t0, t2, 2, 3, 6, 7);
    out[3] = SHUFFLE(t1, t3, 2, 3, 6, 7);
}

/* buf[t][g][q] = src[q][t] for t < n: 4 lanes interleaved, 4 steps per transpose. */
static inline void interleave(const double *const src[4], int n, v4d (*buf)[GROUPS], int g)
{
    int t = 0;
    for (; t + 4 <= n; t += 4) {
        v4d rows[4], cols[4];
        for (int q = 0; q < 4; q++)
            rows[q] = load4(src[q] + t);
        transpose4(rows, cols);
        for (int u = 0; u < 4; u++)
            buf[t + u][g] = cols[u];
    }
    for (; t < n; t++)
        for (int q = 0; q < 4; q++)
            buf[t][g][q] = src[q][t];
}

/* The step-major buffers of a round.  Windows up to RING_WINDOW: one ring of
 * `rows` (window + FILL, rounded up to a multiple of FILL) that serves both the
 * entering sample of a step and, window rows back, the leaving one.  Longer
 * windows: the entering and the leaving samples of a fill in two buffers. */
#define RING_WINDOW 16384
typedef struct {
    v4d (*buf)[GROUPS];
    int64_t rows; /* ring rows, or 0: two buffers of FILL rows */
} step_buffers;

/* 4 * ng segments of one length, in lockstep (ng <= GROUPS, a constant where inlined).
 *
 * The segments start resync samples apart, so with a power-of-two resync their
 * samples at one step share an L1 set, and 32 streams read in lockstep defeat
 * the prefetcher.  Each fill of FILL steps is therefore first copied, 4 lanes at
 * a time, into step-major rows (see step_buffers), which the vector loop reads.
 * The loop runs 4 steps per group with no test; if a lane of the 4 may flag or
 * met a non-finite sample (rare), the lane redoes them with the scalar operations.
 */
static inline __attribute__((always_inline)) void
run_round(const double *x, int64_t x0, int64_t window, double thr2, segment *sg, int64_t *idx,
          double *score, const int ng, step_buffers sb)
{
    const int nl = 4 * ng;
    const int64_t steps = sg[0].e - sg[0].g;
    const int64_t qr = sb.rows;
    lane_sums w[4 * GROUPS];
    v4d K[GROUPS], K2[GROUPS], INV[GROUPS], S1[GROUPS], S2[GROUPS];
    for (int g = 0; g < ng; g++)
        for (int q = 0; q < 4; q++) {
            segment *s = &sg[4 * g + q];
            lane_sums *lw = &w[4 * g + q];
            *lw = exact_window(x, s->g - window - x0, s->g - x0);
            K[g][q] = lw->k;
            K2[g][q] = 2.0 * lw->k;
            INV[g][q] = lw->inv;
            S1[g][q] = lw->s1;
            S2[g][q] = lw->s2;
        }
    const v4d zero = {0.0, 0.0, 0.0, 0.0};
    const v4d T2 = zero + thr2;
    const int64_t whole = steps & ~(int64_t)3; /* the last steps % 4 run alone */
    if (qr > 0) /* the ring's rows before step 0: the window before each segment */
        for (int g = 0; g < ng; g++) {
            const double *sw[4];
            for (int q = 0; q < 4; q++)
                sw[q] = x + (sg[4 * g + q].g - window - x0);
            interleave(sw, (int)window, sb.buf + (qr - window), g);
        }
    for (int64_t f0 = 0; f0 < whole; f0 += FILL) {
        const int nt = whole - f0 < FILL ? (int)(whole - f0) : FILL;
        v4d(*vb)[GROUPS] = qr > 0 ? sb.buf + f0 % qr : sb.buf;
        const v4d(*ob)[GROUPS] = qr > 0 ? sb.buf : sb.buf + FILL;
        const int64_t o0 = qr > 0 ? (f0 % qr - window + qr) % qr : 0; /* leaving row of t = 0 */
        const int64_t wrap = qr > 0 ? qr : INT64_MAX;
        for (int g = 0; g < ng; g++) {
            const double *sv[4], *so[4];
            for (int q = 0; q < 4; q++) {
                sv[q] = x + (sg[4 * g + q].g - x0 + f0);
                so[q] = sv[q] - window;
            }
            interleave(sv, nt, vb, g);
            if (qr == 0)
                interleave(so, nt, sb.buf + FILL, g);
        }
        for (int t = 0; t < nt; t += 4) {
            /* Fetch the next fill's entering samples while this one computes: 2 lines
             * per 4 steps, lane after lane (past a lane's end they are only hints). */
            for (int p = 2 * t; p < 2 * t + 8; p++) {
                int lane = p % nl, line = p / nl;
                __builtin_prefetch(x + (sg[lane].g - x0 + f0 + FILL + 8 * line));
            }
            int64_t orow[4];
            for (int u = 0; u < 4; u++) {
                orow[u] = o0 + t + u;
                orow[u] -= orow[u] >= wrap ? wrap : 0;
            }
            for (int g = 0; g < ng; g++) {
                v4d s1 = S1[g], s2 = S2[g];
                const v4d k = K[g], k2 = K2[g], inv = INV[g];
                v4l redo = (v4l){0, 0, 0, 0};
                for (int u = 0; u < 4; u++) {
                    const v4d V = vb[t + u][g], O = ob[orow[u]][g];
                    v4d M = s1 * inv;
                    v4d D = V - k - M;
                    /* No clamp of a negative variance: a superset, re-tested below. */
                    redo |= D * D > T2 * (s2 * inv - M * M);
                    v4d DL = V - O;
                    s1 = s1 + DL;
                    s2 = s2 + DL * (V + O - k2);
                }
                /* A non-finite DL (a non-finite sample, or an overflow) makes s1 non-finite
                 * for good: one test after the 4 steps finds the lanes that met one. */
                redo |= (s1 - s1) != zero; /* NaN != 0 is true */
                const int mask = lane_mask(redo);
                const v4d s1_0 = S1[g], s2_0 = S2[g];
                S1[g] = s1;
                S2[g] = s2;
                if (__builtin_expect(mask == 0, 1))
                    continue;
                /* Rare: redo the 4 steps of the lanes that may flag or met a non-finite
                 * sample with the scalar operations, from their sums before them (the
                 * other lanes' sums took the same operations). */
                for (int q = 0; q < 4; q++) {
                    if (!(mask >> q & 1))
                        continue;
                    int l = 4 * g + q;
                    w[l].s1 = s1_0[q];
                    w[l].s2 = s2_0[q];
                    for (int u = 0; u < 4; u++) {
                        int64_t j = sg[l].g + f0 + t + u;
                        if (j >= sg[l].i)
                            flag_if_over(vb[t + u][g][q], j, &w[l], thr2, &sg[l], idx, score);
                        slide(vb[t + u][g][q], ob[orow[u]][g][q], &w[l]);
                    }
                    S1[g][q] = w[l].s1;
                    S2[g][q] = w[l].s2;
                    INV[g][q] = w[l].inv;
                }
            }
        }
    }
    for (int l = 0; l < nl; l++) { /* each lane's last steps alone */
        w[l].s1 = S1[l / 4][l % 4];
        w[l].s2 = S2[l / 4][l % 4];
        run_scalar(x, x0, sg[l].g + whole, sg[l].e, window, &w[l], thr2, &sg[l], idx, score);
    }
}

/* The segments covering [start, stop) (as _segments), or NULL if out of memory. */
static segment *segments(int64_t start, int64_t stop, int64_t window, int64_t resync,
                         int64_t *count)
{
    int64_t first = start > window ? start : window;
    int64_t n = first >= stop ? 0 : (stop - 1) / resync - first / resync + 1;
    segment *sg = malloc((size_t)(n > 0 ? n : 1) * sizeof(segment));
    if (sg == NULL)
        return NULL;
    int64_t i = first;
    for (int64_t s = 0; s < n; s++) {
        int64_t g = (i / resync) * resync;
        if (g < window)
            g = window;
        int64_t e = (g / resync + 1) * resync;
        if (e > stop)
            e = stop;
        sg[s] = (segment){g, i, e, i - start, 0};
        i = e;
    }
    *count = n;
    return sg;
}

/* The step rows a window needs, and the doubles of scratch that hold them aligned. */
static int64_t step_rows(int64_t window)
{
    return window <= RING_WINDOW ? (window + 2 * FILL - 1) / FILL * FILL : 0;
}

int64_t tss_work_len(int64_t window)
{
    int64_t rows = step_rows(window);
    return (rows > 0 ? rows : 2 * FILL) * 4 * GROUPS + 4; /* + 4: room to align to 32 bytes */
}

/* Flag |x_i - mean| > threshold * std over the trailing window, for i in [start, stop).
 *
 * The contract of _rolling_zscore without dense scores: x holds absolute samples
 * [x0, x0 + len) from at least max(window, floor(start / resync) * resync) - window;
 * idx and score have room for stop - start entries.  work is scratch of at least
 * tss_work_len(window) doubles (its contents on entry do not matter; the caller
 * keeps it, so that no call faults in fresh pages).  Returns the number of flags
 * (sorted by index), -1 if out of memory, or -2 if work is too short.
 */
int64_t tss_rolling_zscore_flags(const double *x, int64_t x0, int64_t start, int64_t stop,
                                 int64_t window, double threshold, int64_t resync, int64_t *idx,
                                 double *score, double *work, int64_t work_len)
{
    if (work_len < tss_work_len(window))
        return -2;
    int64_t n;
    segment *sg = segments(start, stop, window, resync, &n);
    if (sg == NULL)
        return -1;
    double thr2 = threshold * threshold;
    uintptr_t at = ((uintptr_t)work + 31) & ~(uintptr_t)31;
    step_buffers sb = {(v4d(*)[GROUPS])at, step_rows(window)};
    int64_t s = 0;
    while (s < n) {
        int64_t r = s; /* a round: up to GROUPS * 4 consecutive segments of one length */
        while (r < n && r - s < 4 * GROUPS && sg[r].e - sg[r].g == sg[s].e - sg[s].g)
            r++;
        int ng = (int)((r - s) / 4);
        if (ng > 0) {
            switch (ng) { /* one specialised loop per group count */
            case 4: run_round(x, x0, window, thr2, sg + s, idx, score, 4, sb); break;
            case 3: run_round(x, x0, window, thr2, sg + s, idx, score, 3, sb); break;
            case 2: run_round(x, x0, window, thr2, sg + s, idx, score, 2, sb); break;
            default: run_round(x, x0, window, thr2, sg + s, idx, score, 1, sb); break;
            }
            s += 4 * ng;
            continue;
        }
        lane_sums w = exact_window(x, sg[s].g - window - x0, sg[s].g - x0);
        run_scalar(x, x0, sg[s].g, sg[s].e, window, &w, thr2, &sg[s], idx, score);
        s++;
    }
    int64_t nflag = 0; /* pack the regions in segment order (each starts at or after nflag) */
    for (s = 0; s < n; s++) {
        memmove(idx + nflag, idx + sg[s].region, (size_t)sg[s].nflag * sizeof(int64_t));
        memmove(score + nflag, score + sg[s].region, (size_t)sg[s].nflag * sizeof(double));
        nflag += sg[s].nflag;
    }
    free(sg);
    return nflag;
}
