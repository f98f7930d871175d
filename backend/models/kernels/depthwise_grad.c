/*
 * Weight gradient of a depthwise ("same"-padded, stride 1) convolution on channels-last
 * float32 images, for NasN's training plan (backend/models/training_plan.py). Compiled on
 * first use by backend/models/kernels/__init__.py with the machine's C compiler and OpenMP.
 *
 * For x and g of shape (N, H, W, C), dense, taps (kh, kw), dilations (dh, dw) and zero padding
 * (dh * (kh / 2), dw * (kw / 2)), one call writes
 *
 *     out[i * kw + j][c] = sum_{n, y, x} g[n, y, x, c] * x[n, y - ph + i dh, x - pw + j dw, c]
 *
 * (taps outside the image read zero), the gradient of the loss with respect to the taps when g
 * is the gradient with respect to the convolution's output. oneDNN computes the same sums, but
 * measured on the CPUs here its channels-last depthwise weight gradient took 10-15x the time of
 * the forward convolution; this loop reads g and x once per image row (the nine shifted rows
 * of x come from the L1/L2 caches).
 *
 * Each image row is summed in float32 (at most W products per tap and channel, in UNROLL
 * partial sums), rows are accumulated in float64 per thread, threads are added in a fixed
 * order: the result does not depend on the number of threads beyond the rounding of the last
 * float64 additions.
 *
 * dwg_backward computes, for 3x3 taps and a multiple of 16 channels, both gradients in one
 * pass: the input's,
 *
 *     gx[n, y, x, c] = sum_{i, j} w[i * 3 + j][c] * g[n, y + ph - i dh, x + pw - j dw, c]
 *
 * (the transposed convolution, written as a gather so that each pixel of gx is summed in
 * registers and stored once) and the taps' as above, from the same loads of g: each g value
 * read for gx[y, x] is the one that x[y, x] multiplies in the taps' sum. One row of gx reads
 * three rows of g (from the L1/L2 caches) and one of x, in blocks of 16 channels held in
 * GCC vector registers (AVX-512, AVX2 or plain code, whatever -march=native targets).
 *
 * dwg_separable_backward is the backward pass of y = conv1x1(depthwise3x3(relu(x))) (a
 * dil_*_conv_3x3 of the search space) without any intermediate image in memory: per image row
 * it recomputes the depthwise output d from x, takes the 1x1 convolution's gradients
 * (gd = W^T g per pixel, gW += g d^T, in blocks of PB pixels whose d and gd stay in registers
 * while each output channel's g broadcasts into both), keeps the rows of gd in a ring of
 * 2 dh + 1 rows (in the L2 cache), and from them the depthwise gradients of the row dh above as
 * dwg_backward does. Threads take contiguous ranges of rows; a thread recomputes the gd rows of
 * its neighbours' ranges that it needs, but adds only its own rows to gW.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define MAX_C 1024
#define MAX_TAPS 81
#define CB 16      /* channels per register block */
#define UNROLL 4   /* pixels summed apart per channel */

int dwg_abi_version(void) { return 4; }  /* bumped with any change of the entries' arguments */

int dwg_weight(const float *x, const float *g, double *out, int64_t n, int64_t h, int64_t w,
               int64_t c, int64_t kh, int64_t kw, int64_t dh, int64_t dw, int64_t threads)
{
    if (n < 1 || h < 1 || w < 1 || c < 1 || c > MAX_C || kh < 1 || kw < 1 || kh % 2 == 0 || kw % 2 == 0
            || kh * kw > MAX_TAPS || dh < 1 || dw < 1 || threads < 1)
        return 1;
    const int64_t taps = kh * kw, ph = dh * (kh / 2), pw = dw * (kw / 2);
    const int64_t rows = n * h;
    if (threads > rows)
        threads = rows;
    double *partial = calloc((size_t)(threads * taps * c), sizeof(double));
    if (partial == NULL)
        return 2;
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        double *mine = partial + t * taps * c;
        float acc[MAX_C];
        for (int64_t r = t * rows / nt; r < (t + 1) * rows / nt; r++) {
            const int64_t b = r / h, y = r % h;
            const float *grow = g + (b * h + y) * w * c;
            for (int64_t i = 0; i < kh; i++) {
                const int64_t sy = y - ph + i * dh;
                if (sy < 0 || sy >= h)
                    continue;
                const float *xrow = x + (b * h + sy) * w * c;
                for (int64_t j = 0; j < kw; j++) {
                    const int64_t ox = j * dw - pw;
                    const int64_t lo = ox < 0 ? -ox : 0, hi = ox > 0 ? w - ox : w;
                    double *o = mine + (i * kw + j) * c;
                    int64_t c0 = 0;
                    /* blocks of CB channels: UNROLL independent partial sums per channel, so
                     * that they stay in registers and no sum waits on the previous pixel's */
                    for (; c0 + CB <= c; c0 += CB) {
                        float s[UNROLL][CB];
                        memset(s, 0, sizeof s);
                        int64_t px = lo;
                        for (; px + UNROLL <= hi; px += UNROLL)
                            for (int u = 0; u < UNROLL; u++) {
                                const float *gp = grow + (px + u) * c + c0, *xp = xrow + (px + u + ox) * c + c0;
#pragma omp simd
                                for (int k = 0; k < CB; k++)
                                    s[u][k] += gp[k] * xp[k];
                            }
                        for (; px < hi; px++) {
                            const float *gp = grow + px * c + c0, *xp = xrow + (px + ox) * c + c0;
#pragma omp simd
                            for (int k = 0; k < CB; k++)
                                s[0][k] += gp[k] * xp[k];
                        }
                        for (int k = 0; k < CB; k++) {
                            float total = 0.0f;
                            for (int u = 0; u < UNROLL; u++)
                                total += s[u][k];
                            o[c0 + k] += total;
                        }
                    }
                    if (c0 < c) {  /* the channels left over */
                        memset(acc, 0, (size_t)(c - c0) * sizeof(float));
                        for (int64_t px = lo; px < hi; px++) {
                            const float *gp = grow + px * c, *xp = xrow + (px + ox) * c;
#pragma omp simd
                            for (int64_t ch = c0; ch < c; ch++)
                                acc[ch - c0] += gp[ch] * xp[ch];
                        }
                        for (int64_t ch = c0; ch < c; ch++)
                            o[ch] += acc[ch - c0];
                    }
                }
            }
        }
    }
    memset(out, 0, (size_t)(taps * c) * sizeof(double));
    for (int64_t t = 0; t < threads; t++)
        for (int64_t k = 0; k < taps * c; k++)
            out[k] += partial[t * taps * c + k];
    free(partial);
    return 0;
}

/* sixteen channels; unaligned loads and stores through memcpy (one vector move each) */
typedef float v16 __attribute__((vector_size(64)));

static inline v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

/* v where test > 0, else 0 (a ReLU for v = test, its backward mask otherwise) */
typedef int32_t v16i __attribute__((vector_size(64)));
static inline v16 where_positive(v16 test, v16 v) { const v16 zero = {0}; return (v16)((v16i)v & (test > zero)); }

/* GCC keeps a * b + c as two roundings under -std=c11; fused multiply-adds here (clang
 * contracts them by default) */
#if defined(__GNUC__) && !defined(__clang__)
#define CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define CONTRACT
#endif

/* one row y of gx and that row's share of the taps' sums, for channels c0:c0+16; grows[i] is
 * the row of g that tap row i reads (a row of zeros outside the image) */
static inline __attribute__((always_inline)) CONTRACT void backward_row(
    const float *xrow, const float *const grows[3], const v16 taps[9], float *gxrow, v16 sums[9],
    int64_t w, int64_t c, int64_t c0, int64_t pw, int64_t dw, int relu)
{
    for (int64_t px = 0; px < w; px++) {
        const v16 raw = load16(xrow + px * c + c0);
        const v16 xv = relu ? where_positive(raw, raw) : raw;
        v16 acc = {0};
        if (px >= pw && px + pw < w) {  /* every column tap inside the image */
#pragma GCC unroll 3
            for (int i = 0; i < 3; i++) {
                const float *gp = grows[i] + (px + pw) * c + c0;
#pragma GCC unroll 3
                for (int j = 0; j < 3; j++) {
                    const v16 gv = load16(gp - j * dw * c);
                    acc += taps[i * 3 + j] * gv;
                    sums[i * 3 + j] += xv * gv;
                }
            }
        } else {
#pragma GCC unroll 3
            for (int i = 0; i < 3; i++)
#pragma GCC unroll 3
                for (int j = 0; j < 3; j++) {
                    const int64_t sx = px + pw - j * dw;
                    if (sx < 0 || sx >= w)
                        continue;
                    const v16 gv = load16(grows[i] + sx * c + c0);
                    acc += taps[i * 3 + j] * gv;
                    sums[i * 3 + j] += xv * gv;
                }
        }
        store16(gxrow + px * c + c0, relu ? where_positive(raw, acc) : acc);
    }
}

/* one row of gx and its share of the taps' sums, added to sums (9, C) in float64: every block
 * of 16 channels through backward_row (relu a constant there in each call) */
static CONTRACT void depthwise_row(const float *xrow, const float *const grows[3], const float *wt, float *gxrow,
                                   double *sums_out, int64_t w, int64_t c, int64_t pw, int64_t dw, int64_t relu)
{
    for (int64_t c0 = 0; c0 < c; c0 += 16) {
        v16 taps[9], sums[9];
        for (int k = 0; k < 9; k++) {
            taps[k] = load16(wt + k * c + c0);
            sums[k] = (v16){0};
        }
        if (relu)
            backward_row(xrow, grows, taps, gxrow, sums, w, c, c0, pw, dw, 1);
        else
            backward_row(xrow, grows, taps, gxrow, sums, w, c, c0, pw, dw, 0);
        for (int k = 0; k < 9; k++)
            for (int l = 0; l < 16; l++)
                sums_out[k * c + c0 + l] += sums[k][l];
    }
}

/* x, g, gx (N, H, W, C) dense; wt the taps (9, C) tap-major; out the taps' gradient (9, C);
 * with relu set, the convolution reads relu(x): the taps' sums take max(x, 0) and gx is the
 * gradient with respect to x (zero where x is not > 0, as PyTorch's ReLU backward gives it) */
CONTRACT int dwg_backward(const float *x, const float *g, const float *wt, float *gx, double *out,
                 int64_t n, int64_t h, int64_t w, int64_t c, int64_t dh, int64_t dw, int64_t relu,
                 int64_t threads)
{
    if (n < 1 || h < 1 || w < 1 || c < 16 || c > MAX_C || c % 16 || dh < 1 || dw < 1 || threads < 1)
        return 1;
    const int64_t ph = dh, pw = dw, rows = n * h;
    if (threads > rows)
        threads = rows;
    double *partial = calloc((size_t)(threads * 9 * c), sizeof(double));
    float *zeros = calloc((size_t)(w * c), sizeof(float));
    if (partial == NULL || zeros == NULL) {
        free(partial);
        free(zeros);
        return 2;
    }
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        double *mine = partial + t * 9 * c;
        for (int64_t r = t * rows / nt; r < (t + 1) * rows / nt; r++) {
            const int64_t b = r / h, y = r % h;
            const float *grows[3];
            for (int i = 0; i < 3; i++) {
                const int64_t sy = y + ph - i * dh;
                grows[i] = (sy < 0 || sy >= h) ? zeros : g + (b * h + sy) * w * c;
            }
            const float *xrow = x + r * w * c;
            float *gxrow = gx + r * w * c;
            depthwise_row(xrow, grows, wt, gxrow, mine, w, c, pw, dw, relu);
        }
    }
    memset(out, 0, (size_t)(9 * c) * sizeof(double));
    for (int64_t t = 0; t < threads; t++)
        for (int64_t k = 0; k < 9 * c; k++)
            out[k] += partial[t * 9 * c + k];
    free(partial);
    free(zeros);
    return 0;
}

#define PB 8  /* pixels per block of the 1x1 backward */
#define OU 4  /* output channels per step of its own rows */

/* the depthwise output d (of relu(x)) at pixel px of a row, channels c0:c0+16 */
static inline __attribute__((always_inline)) CONTRACT v16 depthwise_pixel(
    const float *const xrows[3], const v16 taps[9], int64_t px, int64_t w, int64_t c, int64_t c0, int64_t dw)
{
    v16 acc = {0};
    const int inside = px >= dw && px + dw < w;
#pragma GCC unroll 3
    for (int i = 0; i < 3; i++)
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++) {
            const int64_t sx = px - dw + j * dw;
            if (!inside && (sx < 0 || sx >= w))
                continue;
            const v16 v = load16(xrows[i] + sx * c + c0);
            acc += taps[i * 3 + j] * where_positive(v, v);
        }
    return acc;
}

/* one row q: gd[q] = W^T g[q] per pixel into gdrow and, with own set, gw32 += g[q] d[q]^T
 * (d recomputed from xrows); wt (9, C) depthwise taps, wp (O, C) the 1x1 weight */
static CONTRACT void pointwise_row(const float *const xrows[3], const float *grow, const float *wt, const float *wp,
                                   float *gdrow, float *gw32, int own, int64_t w, int64_t c, int64_t o, int64_t dw)
{
    for (int64_t c0 = 0; c0 < c; c0 += 16) {
        v16 taps[9];
        for (int k = 0; k < 9; k++)
            taps[k] = load16(wt + k * c + c0);
        for (int64_t p0 = 0; p0 < w; p0 += PB) {
            const int np = w - p0 < PB ? (int)(w - p0) : PB;
            v16 d[PB], acc[PB];
            for (int p = 0; p < PB; p++) {
                d[p] = (p < np && own) ? depthwise_pixel(xrows, taps, p0 + p, w, c, c0, dw) : (v16){0};
                acc[p] = (v16){0};
            }
            if (np == PB) {
                int64_t oc = 0;
                if (own)
                    for (; oc + OU <= o; oc += OU) {  /* OU output channels: independent sums */
                        v16 wv[OU], gw[OU];
#pragma GCC unroll 4
                        for (int u = 0; u < OU; u++) {
                            wv[u] = load16(wp + (oc + u) * c + c0);
                            gw[u] = load16(gw32 + (oc + u) * c + c0);
                        }
                        const float *gp = grow + p0 * o + oc;
#pragma GCC unroll 8
                        for (int p = 0; p < PB; p++)
#pragma GCC unroll 4
                            for (int u = 0; u < OU; u++) {
                                const float gv = gp[p * o + u];
                                acc[p] += gv * wv[u];
                                gw[u] += gv * d[p];
                            }
#pragma GCC unroll 4
                        for (int u = 0; u < OU; u++)
                            store16(gw32 + (oc + u) * c + c0, gw[u]);
                    }
                for (; oc < o; oc++) {
                    const v16 wv = load16(wp + oc * c + c0);
                    const float *gp = grow + p0 * o + oc;
                    if (own) {
                        v16 gw = load16(gw32 + oc * c + c0);
#pragma GCC unroll 8
                        for (int p = 0; p < PB; p++) {
                            const float gv = gp[p * o];
                            gw += gv * d[p];
                            acc[p] += gv * wv;
                        }
                        store16(gw32 + oc * c + c0, gw);
                    } else {
#pragma GCC unroll 8
                        for (int p = 0; p < PB; p++)
                            acc[p] += gp[p * o] * wv;
                    }
                }
            } else {
                for (int64_t oc = 0; oc < o; oc++) {
                    const v16 wv = load16(wp + oc * c + c0);
                    v16 gw = load16(gw32 + oc * c + c0);
                    for (int p = 0; p < np; p++) {
                        const float gv = grow[(p0 + p) * o + oc];
                        gw += gv * d[p];  /* d is zero unless own */
                        acc[p] += gv * wv;
                    }
                    store16(gw32 + oc * c + c0, gw);
                }
            }
            for (int p = 0; p < np; p++)
                store16(gdrow + (p0 + p) * c + c0, acc[p]);
        }
    }
}

/* x (N, H, W, C), g (N, H, W, O) dense; wt (9, C) tap-major; wp (O, C); writes gx (N, H, W, C)
 * and the float64 gradients of the taps, out_dw (9, C), and of the 1x1 weight, out_pw (O, C) */
CONTRACT int dwg_separable_backward(const float *x, const float *g, const float *wt, const float *wp, float *gx,
                                    double *out_dw, double *out_pw, int64_t n, int64_t h, int64_t w, int64_t c,
                                    int64_t o, int64_t dh, int64_t dw, int64_t threads)
{
    if (n < 1 || h < 1 || w < 1 || c < 16 || c > MAX_C || c % 16 || o < 1 || o > MAX_C || dh < 1 || dw < 1
            || threads < 1)
        return 1;
    const int64_t rows = n * h, ring = 2 * dh + 1, row_floats = w * c;
    if (threads > rows)
        threads = rows;
    double *partial = calloc((size_t)(threads * (9 + o) * c), sizeof(double));
    float *zeros = calloc((size_t)row_floats, sizeof(float));
    float *scratch = malloc((size_t)(threads * (ring * row_floats + o * c)) * sizeof(float));
    if (partial == NULL || zeros == NULL || scratch == NULL) {
        free(partial);
        free(zeros);
        free(scratch);
        return 2;
    }
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t r0 = t * rows / nt, r1 = (t + 1) * rows / nt;
        double *mine_dw = partial + t * (9 + o) * c, *mine_pw = mine_dw + 9 * c;
        float *gd = scratch + t * (ring * row_floats + o * c), *gw32 = gd + ring * row_floats;
        int64_t image = -1, done = -1;  /* rows 0..done of this image have their gd in the ring */
        for (int64_t r = r0; r < r1; r++) {
            const int64_t b = r / h, y = r % h;
            if (b != image) {
                image = b;
                done = (y - dh > 0 ? y - dh : 0) - 1;
            }
            const int64_t need = y + dh < h - 1 ? y + dh : h - 1;
            for (int64_t q = done + 1; q <= need; q++) {  /* gd of row q, and gW of it if it is ours */
                const int own = b * h + q >= r0 && b * h + q < r1;
                const float *xrows[3];
                for (int i = 0; i < 3; i++) {
                    const int64_t sy = q - dh + i * dh;
                    xrows[i] = (sy < 0 || sy >= h) ? zeros : x + (b * h + sy) * row_floats;
                }
                if (own)
                    memset(gw32, 0, (size_t)(o * c) * sizeof(float));
                pointwise_row(xrows, g + (b * h + q) * w * o, wt, wp, gd + (q % ring) * row_floats, gw32, own,
                              w, c, o, dw);
                if (own)
                    for (int64_t k = 0; k < o * c; k++)
                        mine_pw[k] += gw32[k];
            }
            done = need;
            const float *grows[3];
            for (int i = 0; i < 3; i++) {
                const int64_t sy = y + dh - i * dh;
                grows[i] = (sy < 0 || sy >= h) ? zeros : gd + (sy % ring) * row_floats;
            }
            depthwise_row(x + r * row_floats, grows, wt, gx + r * row_floats, mine_dw, w, c, dw, dw, 1);
        }
    }
    memset(out_dw, 0, (size_t)(9 * c) * sizeof(double));
    memset(out_pw, 0, (size_t)(o * c) * sizeof(double));
    for (int64_t t = 0; t < threads; t++) {
        for (int64_t k = 0; k < 9 * c; k++)
            out_dw[k] += partial[t * (9 + o) * c + k];
        for (int64_t k = 0; k < o * c; k++)
            out_pw[k] += partial[t * (9 + o) * c + 9 * c + k];
    }
    free(partial);
    free(zeros);
    free(scratch);
    return 0;
}
