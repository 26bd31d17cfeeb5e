/* One-pass CPU kernels of the batch-statistics norms (PN, PN-V, BN), float32 in and out.
 *
 * Why hand-written: a norm is memory-bound, and its training step needs per-channel sums
 * over the rows (the batch statistics, dgamma, dbeta, nu's update) next to a row-wise
 * output. PyTorch's eager ops make one pass over memory per op; torch.compile's CPU backend
 * (measured with torch 2.13) emits the column sums as a separate, channel-outer loop that
 * strides down the rows and is slower than the eager matrix-vector product. Here each pass
 * walks the rows once, keeps the row in L1 for the row-wise work (group RMS, the group
 * projection of the backward) and accumulates the column sums in per-thread double
 * buffers of C entries. The algebra that lets PN and PN-V/BN reach their results in one
 * (PN) or two (PN-V, BN) passes each way is in pn_fairseq/norms/fused.py.
 *
 * Layout: x, dy, y, dx are N x C row-major (row n = t * B + b, fairseq's T x B x C
 * flattened); w_rows: N weights, 1 = real token, 0 = padding (NULL: every row is real).
 * G > 0: each row's C channels form G contiguous groups, each scaled by
 * r = 1 / sqrt(mean_group(x^2) + eps) first ("xs = x * r"); G = 0: xs = x.
 * r_io / r_in (N x G, optional): the group factors, written by a forward pass that computes
 * them (r_given = 0) so that later passes over the same rows read them (r_given = 1, and
 * the backward) instead of reducing each row again.
 * Every sum output is C doubles, written (not accumulated into); NULL skips it.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#define NUM_THREADS() omp_get_num_threads()
#else
#define THREAD_ID() 0
#define NUM_THREADS() 1
#endif

/* sum a[c] * b[c] in 16 independent lanes: the loop-carried dependency of one accumulator
 * (what GCC 12 emitted for an `omp simd reduction` here, scalar) makes the row-wise
 * reductions, not memory, the bottleneck of the grouped passes. */
static inline float dot(const float *a, const float *b, int64_t n) {
    float lanes[16] = {0};
    int64_t c = 0;
    for (; c + 16 <= n; c += 16)
        for (int k = 0; k < 16; ++k) lanes[k] += a[c + k] * b[c + k];
    float acc = 0.f;
    for (; c < n; ++c) acc += a[c] * b[c];
    for (int k = 0; k < 16; ++k) acc += lanes[k];
    return acc;
}

/* r[g] = 1 / sqrt(mean_group(x^2) + eps) for one row's G groups. The passes then use
 * xs = x * r on the fly, group by group, instead of storing it. */
static void group_rstd(const float *x, int64_t C, int64_t G, float eps, float *r) {
    int64_t cg = C / G;
    for (int64_t g = 0; g < G; ++g) {
        const float *xg = x + g * cg;
        r[g] = 1.0f / sqrtf(dot(xg, xg, cg) / (float)cg + eps);
    }
}

/* Column sums accumulate in float over FLUSH rows (full SIMD width, L1-resident), then into
 * per-thread doubles, so that the result is as exact as a float64 sum for any N. */
#define FLUSH 32

static void flush(double *d, float *f, int64_t C) {
    for (int64_t c = 0; c < C; ++c) {
        d[c] += (double)f[c];
        f[c] = 0.f;
    }
}

/* outs[k] (NULL: skipped) = the sum over threads of partial sum k; part is nthreads x nsum x C. */
static void reduce_partials(const double *part, int nthreads, int nsum, int64_t C, double **outs) {
    for (int k = 0; k < nsum; ++k) {
        if (!outs[k]) continue;
        memset(outs[k], 0, sizeof(double) * C);
        for (int t = 0; t < nthreads; ++t) {
            const double *src = part + ((int64_t)t * nsum + k) * C;
            for (int64_t c = 0; c < C; ++c) outs[k][c] += src[c];
        }
    }
}

static int clamp_threads(int nthreads, int64_t N) {
    if (nthreads < 1) nthreads = 1;
    if ((int64_t)nthreads > N) nthreads = (int)(N > 0 ? N : 1);
    return nthreads;
}

/* Forward pass. Sums over real rows of d = xs - shift (shift NULL: 0): s1_keep = sum d,
 * s2_keep = sum d^2; over all rows: s2_all = sum xs^2. Output (y non-NULL):
 * y = xs * a + b, except padding rows, which get pad_value when it is non-NULL. */
int pn_forward(const float *x, int64_t N, int64_t C, int64_t G, float eps, float *r_io, int r_given,
               const float *w_rows,
               const float *shift, double *s1_keep, double *s2_keep, double *s2_all,
               const float *a, const float *b, const float *pad_value, float *y, int nthreads) {
    nthreads = clamp_threads(nthreads, N);
    int nsum = 3;
    const int derive = s2_keep && s2_all && !shift;
    double *part = (double *)calloc((size_t)nthreads * nsum * C, sizeof(double));
    if (!part) return 1;
    int failed = 0;
#pragma omp parallel num_threads(nthreads)
    {
        int tid = THREAD_ID(), nt = NUM_THREADS();
        double *p1 = part + ((int64_t)tid * nsum + 0) * C;
        double *p2 = part + ((int64_t)tid * nsum + 1) * C;
        double *pa = part + ((int64_t)tid * nsum + 2) * C;
        float *buf = (float *)malloc(sizeof(float) * (G + 1 + (int64_t)nsum * C));
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        } else {
            float *rbuf = buf, *f1 = buf + G + 1, *f2 = f1 + C, *fa = f2 + C;
            memset(f1, 0, sizeof(float) * nsum * C);
            int64_t lo = N * tid / nt, hi = N * (tid + 1) / nt;
            for (int64_t n = lo; n < hi; ++n) {
                const float *xn = x + n * C;
                float *yn = y ? y + n * C : NULL;
                /* The row's group factors (G = 0: one group of C with factor 1). */
                float one = 1.f, *r = &one;
                int64_t ng = G > 0 ? G : 1, cg = C / ng;
                if (G > 0) {
                    r = r_io && r_given ? r_io + n * G : rbuf;
                    if (!(r_io && r_given)) {
                        group_rstd(xn, C, G, eps, r);
                        if (r_io) memcpy(r_io + n * G, r, sizeof(float) * G);
                    }
                }
                int real = !w_rows || w_rows[n] != 0.f;
                int do1 = real && s1_keep, do2 = s2_keep && (derive ? !real : real);
                int doy = yn && (real || !pad_value);
                if (yn && !doy) memcpy(yn, pad_value, sizeof(float) * C);
                for (int64_t g = 0; g < ng; ++g) {
                    const int64_t o = g * cg, e = o + cg;
                    const float rg = r[g];
                    if (do1) {
#pragma omp simd
                        for (int64_t j = o; j < e; ++j) f1[j] += xn[j] * rg - (shift ? shift[j] : 0.f);
                    }
                    /* derive: s2_keep = s2_all - (the padding rows' part), one loop less per real row. */
                    if (do2) {
#pragma omp simd
                        for (int64_t j = o; j < e; ++j) {
                            float d = xn[j] * rg - (shift ? shift[j] : 0.f);
                            f2[j] += d * d;
                        }
                    }
                    if (s2_all && doy) {  /* PN's pass: sum and output in one loop */
#pragma omp simd
                        for (int64_t j = o; j < e; ++j) {
                            float v = xn[j] * rg;
                            fa[j] += v * v;
                            yn[j] = v * a[j] + b[j];
                        }
                        continue;
                    }
                    if (s2_all) {
#pragma omp simd
                        for (int64_t j = o; j < e; ++j) fa[j] += (xn[j] * rg) * (xn[j] * rg);
                    }
                    if (doy) {
#pragma omp simd
                        for (int64_t j = o; j < e; ++j) yn[j] = (xn[j] * rg) * a[j] + b[j];
                    }
                }
                if ((n - lo + 1) % FLUSH == 0 || n + 1 == hi) {
                    if (s1_keep) flush(p1, f1, C);
                    if (s2_keep) flush(p2, f2, C);
                    if (s2_all) flush(pa, fa, C);
                }
            }
        }
        free(buf);
    }
    if (!failed) {
        double *outs[3] = {s1_keep, s2_keep, s2_all};
        reduce_partials(part, nthreads, nsum, C, outs);
        if (derive)
            for (int64_t c = 0; c < C; ++c) s2_keep[c] = s2_all[c] - s2_keep[c];
    }
    free(part);
    return failed;
}

/* Backward pass. Sums: sdy_keep = sum_real dy, sdy_all = sum_all dy,
 * sdyx_keep = sum_real dy * (xs - shift), sdyx_all = sum_all dy * xs.
 * Input gradient (dx non-NULL): dxs = dy * c1 - xs * c2 + c3 (c3 NULL: 0); with groups,
 * dx = r * (dxs - xs * mean_group(dxs * xs)) (the exact gradient of the group scaling),
 * else dx = dxs. Padding rows: pad_mode 0 as the others, 1: dx = dy * c1, 2: dx = 0. */
int pn_backward(const float *dy, const float *x, int64_t N, int64_t C, int64_t G, float eps, const float *r_in,
                const float *w_rows, const float *shift, double *sdy_keep, double *sdy_all,
                double *sdyx_keep, double *sdyx_all, const float *c1, const float *c2,
                const float *c3, int pad_mode, float *dx, int nthreads) {
    nthreads = clamp_threads(nthreads, N);
    int nsum = 4;
    /* Sums over real rows derived as (all rows) - (padding rows): one loop less per real row. */
    const int derive_dy = sdy_keep && sdy_all, derive_dyx = sdyx_keep && sdyx_all && !shift;
    double *part = (double *)calloc((size_t)nthreads * nsum * C, sizeof(double));
    if (!part) return 1;
    int failed = 0;
#pragma omp parallel num_threads(nthreads)
    {
        int tid = THREAD_ID(), nt = NUM_THREADS();
        double *pk = part + ((int64_t)tid * nsum + 0) * C;
        double *pa = part + ((int64_t)tid * nsum + 1) * C;
        double *pxk = part + ((int64_t)tid * nsum + 2) * C;
        double *pxa = part + ((int64_t)tid * nsum + 3) * C;
        float *buf = (float *)malloc(sizeof(float) * (C + G + 1 + (int64_t)nsum * C));
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        } else {
            float *dxs = buf, *rbuf = buf + C, *fk = rbuf + G + 1, *fa = fk + C, *fxk = fa + C, *fxa = fxk + C;
            memset(fk, 0, sizeof(float) * nsum * C);
            int64_t lo = N * tid / nt, hi = N * (tid + 1) / nt;
            for (int64_t n = lo; n < hi; ++n) {
                if (n > lo && (n - lo) % FLUSH == 0) {
                    if (sdy_keep) flush(pk, fk, C);
                    if (sdy_all) flush(pa, fa, C);
                    if (sdyx_keep) flush(pxk, fxk, C);
                    if (sdyx_all) flush(pxa, fxa, C);
                }
                const float *xn = x + n * C, *dyn = dy + n * C;
                /* The row's group factors (G = 0: one group of C with factor 1); xs = x * r on the fly. */
                float one = 1.f;
                const float *r = &one;
                int64_t ng = G > 0 ? G : 1, cg = C / ng;
                if (G > 0) {
                    if (r_in) {
                        r = r_in + n * G;
                    } else {
                        group_rstd(xn, C, G, eps, rbuf);
                        r = rbuf;
                    }
                }
                int real = !w_rows || w_rows[n] != 0.f;
                int dok = sdy_keep && (derive_dy ? !real : real), doxk = sdyx_keep && (derive_dyx ? !real : real);
                for (int64_t g = 0; g < ng; ++g) {
                    const int64_t o = g * cg, e = o + cg;
                    const float rg = r[g];
                    if (dok) {
#pragma omp simd
                        for (int64_t j = o; j < e; ++j) fk[j] += dyn[j];
                    }
                    if (doxk) {
#pragma omp simd
                        for (int64_t j = o; j < e; ++j) fxk[j] += dyn[j] * (xn[j] * rg - (shift ? shift[j] : 0.f));
                    }
                    if (sdy_all && sdyx_all) {
#pragma omp simd
                        for (int64_t j = o; j < e; ++j) {
                            fa[j] += dyn[j];
                            fxa[j] += dyn[j] * (xn[j] * rg);
                        }
                    } else if (sdy_all) {
#pragma omp simd
                        for (int64_t j = o; j < e; ++j) fa[j] += dyn[j];
                    } else if (sdyx_all) {
#pragma omp simd
                        for (int64_t j = o; j < e; ++j) fxa[j] += dyn[j] * (xn[j] * rg);
                    }
                }
                if (!dx) continue;
                float *dxn = dx + n * C;
                if (!real && pad_mode == 2) {
                    memset(dxn, 0, sizeof(float) * C);
                    continue;
                }
                if (!real && pad_mode == 1) {
#pragma omp simd
                    for (int64_t c = 0; c < C; ++c) dxn[c] = dyn[c] * c1[c];
                    continue;
                }
                if (G == 0) {
                    if (c3) {
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) dxn[c] = dyn[c] * c1[c] - xn[c] * c2[c] + c3[c];
                    } else {
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) dxn[c] = dyn[c] * c1[c] - xn[c] * c2[c];
                    }
                    continue;
                }
                /* Per group: dxs = dy c1 - xs c2 + c3 into the row buffer while summing dxs * x
                 * in 16 lanes, then dx = r (dxs - xs * mean(dxs xs)); xs = x r is never stored. */
                for (int64_t g = 0; g < G; ++g) {
                    int64_t o = g * cg;
                    float rg = r[g], lanes[16] = {0}, acc = 0.f;
                    int64_t c = 0;
                    for (; c + 16 <= cg; c += 16)
                        for (int k = 0; k < 16; ++k) {
                            int64_t j = o + c + k;
                            float v = dyn[j] * c1[j] - xn[j] * rg * c2[j] + (c3 ? c3[j] : 0.f);
                            dxs[j] = v;
                            lanes[k] += v * xn[j];
                        }
                    for (; c < cg; ++c) {
                        int64_t j = o + c;
                        float v = dyn[j] * c1[j] - xn[j] * rg * c2[j] + (c3 ? c3[j] : 0.f);
                        dxs[j] = v;
                        acc += v * xn[j];
                    }
                    for (int k = 0; k < 16; ++k) acc += lanes[k];
                    float proj = acc * rg / (float)cg, q = rg * rg * proj;
#pragma omp simd
                    for (int64_t j = o; j < o + cg; ++j) dxn[j] = rg * dxs[j] - xn[j] * q;
                }
            }
            if (sdy_keep) flush(pk, fk, C);
            if (sdy_all) flush(pa, fa, C);
            if (sdyx_keep) flush(pxk, fxk, C);
            if (sdyx_all) flush(pxa, fxa, C);
        }
        free(buf);
    }
    if (!failed) {
        double *outs[4] = {sdy_keep, sdy_all, sdyx_keep, sdyx_all};
        reduce_partials(part, nthreads, nsum, C, outs);
        for (int64_t c = 0; c < C; ++c) {
            if (derive_dy) sdy_keep[c] = sdy_all[c] - sdy_keep[c];
            if (derive_dyx) sdyx_keep[c] = sdyx_all[c] - sdyx_keep[c];
        }
    }
    free(part);
    return failed;
}
