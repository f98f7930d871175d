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
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define MAX_C 1024
#define MAX_TAPS 81
#define CB 16      /* channels per register block */
#define UNROLL 4   /* pixels summed apart per channel */

int dwg_abi_version(void) { return 1; }

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
