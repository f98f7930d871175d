/*
 * Backward pass of a 1x1 convolution (no bias) on channels-last float32 images, for NasN's
 * training plan (backend/models/training_plan.py). Compiled on first use by
 * backend/models/kernels/__init__.py with the machine's C compiler and OpenMP.
 *
 * The forward convolution is y[p][o] = sum_c x[p][c] w[o][c] over the pixels p of a dense
 * (pixels, cin) input and a (cout, cin) weight. Given g = d loss / d y, one call writes both
 *
 *     gx[p][c] = sum_o g[p][o] w[o][c]        (the input's gradient, float32)
 *     gw[o][c] = sum_p g[p][o] x[p][c]        (the weight's gradient, float64)
 *
 * (with mask set, the convolution reads relu(x): the weight's sums take max(x, 0), and gx is
 * the gradient with respect to x, 0 where x[p][c] is not > 0, as PyTorch's ReLU backward gives
 * it; x may be relu(t) itself, for which both are unchanged), in one pass
 * over x and g: a block of PB pixels and CB input channels of x stays in registers
 * while every output channel o adds its g[p][o] * x[p][c] to the weight's partial sums and its
 * g[p][o] * w[o][c] to the block's input gradient, so each broadcast of g[p][o] feeds both.
 * oneDNN computes the two products as separate passes; measured in NasN's training step on the
 * CPUs here its 1x1 backward was the step's largest cost (bench/train_step.py, session 14).
 *
 * The weight's partial sums are kept in float32 over chunks of FLUSH pixels (the same chunks
 * whatever the number of threads), then added to a float64 sum per thread; threads are added
 * in a fixed order, so the result does not depend on the number of threads beyond the
 * rounding of those float64 additions. The blocks use
 * AVX-512 or AVX2 + FMA intrinsics where the compiler targets them (-march=native), plain C
 * loops elsewhere (the same sums).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#define MAX_C 1024
#if defined(__AVX512F__)  /* 32 vector registers of 16 floats */
#define PB 8        /* pixels per block */
#define CB 16       /* input channels per register block */
#define OU 4        /* output channels per step (independent partial sums) */
#else               /* AVX2 + FMA (16 registers of 8 floats) and plain C */
#define PB 4
#define CB 8
#define OU 2
#endif
#define FLUSH 256   /* pixels summed in float32 before the float64 sum (a multiple of PB) */

int pwg_abi_version(void) { return 2; }  /* bumped with any change of pwg_backward's arguments */

/* one block of np (<= PB) pixels starting at p0 */
static void block(const float *x, const float *g, const float *w, float *gx, float *gw32,
                  int64_t p0, int64_t np, int64_t cin, int64_t cout, int64_t mask)
{
    for (int64_t c0 = 0; c0 < cin; c0 += CB) {
        const int64_t nc = cin - c0 < CB ? cin - c0 : CB;
        if (np == PB && nc == CB) {
#if defined(__AVX512F__)
            __m512 xs[PB], acc[PB];
            for (int p = 0; p < PB; p++) {
                xs[p] = _mm512_loadu_ps(x + (p0 + p) * cin + c0);
                if (mask)
                    xs[p] = _mm512_max_ps(xs[p], _mm512_setzero_ps());
                acc[p] = _mm512_setzero_ps();
            }
            int64_t o = 0;
            for (; o + OU <= cout; o += OU) {  /* OU output channels: independent sums */
                __m512 s[OU], wo[OU];
                for (int u = 0; u < OU; u++) {
                    s[u] = _mm512_loadu_ps(gw32 + (o + u) * cin + c0);
                    wo[u] = _mm512_loadu_ps(w + (o + u) * cin + c0);
                }
                for (int p = 0; p < PB; p++) {
                    const float *gp = g + (p0 + p) * cout + o;
                    for (int u = 0; u < OU; u++) {
                        const __m512 bv = _mm512_set1_ps(gp[u]);
                        acc[p] = _mm512_fmadd_ps(bv, wo[u], acc[p]);
                        s[u] = _mm512_fmadd_ps(bv, xs[p], s[u]);
                    }
                }
                for (int u = 0; u < OU; u++)
                    _mm512_storeu_ps(gw32 + (o + u) * cin + c0, s[u]);
            }
            for (; o < cout; o++) {
                const __m512 wo = _mm512_loadu_ps(w + o * cin + c0);
                __m512 s = _mm512_loadu_ps(gw32 + o * cin + c0);
                for (int p = 0; p < PB; p++) {
                    const __m512 bv = _mm512_set1_ps(g[(p0 + p) * cout + o]);
                    acc[p] = _mm512_fmadd_ps(bv, wo, acc[p]);
                    s = _mm512_fmadd_ps(bv, xs[p], s);
                }
                _mm512_storeu_ps(gw32 + o * cin + c0, s);
            }
            for (int p = 0; p < PB; p++) {
                if (mask)
                    acc[p] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(xs[p], _mm512_setzero_ps(), _CMP_GT_OQ), acc[p]);
                _mm512_storeu_ps(gx + (p0 + p) * cin + c0, acc[p]);
            }
#elif defined(__AVX2__) && defined(__FMA__)
            __m256 xs[PB], acc[PB];
            for (int p = 0; p < PB; p++) {
                xs[p] = _mm256_loadu_ps(x + (p0 + p) * cin + c0);
                if (mask)
                    xs[p] = _mm256_max_ps(xs[p], _mm256_setzero_ps());
                acc[p] = _mm256_setzero_ps();
            }
            int64_t o = 0;
            for (; o + OU <= cout; o += OU) {
                __m256 s[OU], wo[OU];
                for (int u = 0; u < OU; u++) {
                    s[u] = _mm256_loadu_ps(gw32 + (o + u) * cin + c0);
                    wo[u] = _mm256_loadu_ps(w + (o + u) * cin + c0);
                }
                for (int p = 0; p < PB; p++) {
                    const float *gp = g + (p0 + p) * cout + o;
                    for (int u = 0; u < OU; u++) {
                        const __m256 bv = _mm256_broadcast_ss(gp + u);
                        acc[p] = _mm256_fmadd_ps(bv, wo[u], acc[p]);
                        s[u] = _mm256_fmadd_ps(bv, xs[p], s[u]);
                    }
                }
                for (int u = 0; u < OU; u++)
                    _mm256_storeu_ps(gw32 + (o + u) * cin + c0, s[u]);
            }
            for (; o < cout; o++) {
                const __m256 wo = _mm256_loadu_ps(w + o * cin + c0);
                __m256 s = _mm256_loadu_ps(gw32 + o * cin + c0);
                for (int p = 0; p < PB; p++) {
                    const __m256 bv = _mm256_broadcast_ss(g + (p0 + p) * cout + o);
                    acc[p] = _mm256_fmadd_ps(bv, wo, acc[p]);
                    s = _mm256_fmadd_ps(bv, xs[p], s);
                }
                _mm256_storeu_ps(gw32 + o * cin + c0, s);
            }
            for (int p = 0; p < PB; p++) {
                if (mask)
                    acc[p] = _mm256_and_ps(acc[p], _mm256_cmp_ps(xs[p], _mm256_setzero_ps(), _CMP_GT_OQ));
                _mm256_storeu_ps(gx + (p0 + p) * cin + c0, acc[p]);
            }
#else
            float xs[PB][CB], acc[PB][CB];
            for (int p = 0; p < PB; p++) {
                memcpy(xs[p], x + (p0 + p) * cin + c0, sizeof xs[p]);
                if (mask)
                    for (int k = 0; k < CB; k++)
                        xs[p][k] = xs[p][k] > 0.0f ? xs[p][k] : 0.0f;
                memset(acc[p], 0, sizeof acc[p]);
            }
            for (int64_t o = 0; o < cout; o++) {
                const float *wo = w + o * cin + c0;
                float *go = gw32 + o * cin + c0;
                for (int p = 0; p < PB; p++) {
                    const float bv = g[(p0 + p) * cout + o];
                    for (int k = 0; k < CB; k++) {
                        acc[p][k] += bv * wo[k];
                        go[k] += bv * xs[p][k];
                    }
                }
            }
            for (int p = 0; p < PB; p++)
                for (int k = 0; k < CB; k++)
                    gx[(p0 + p) * cin + c0 + k] = mask && !(xs[p][k] > 0.0f) ? 0.0f : acc[p][k];
#endif
        } else {  /* edges: the same sums, plain loops */
            for (int64_t p = p0; p < p0 + np; p++) {
                float acc[CB] = {0};
                for (int64_t o = 0; o < cout; o++) {
                    const float b = g[p * cout + o];
                    for (int64_t k = 0; k < nc; k++) {
                        const float xv = x[p * cin + c0 + k];
                        acc[k] += b * w[o * cin + c0 + k];
                        gw32[o * cin + c0 + k] += b * (mask && !(xv > 0.0f) ? 0.0f : xv);
                    }
                }
                for (int64_t k = 0; k < nc; k++)
                    gx[p * cin + c0 + k] = mask && !(x[p * cin + c0 + k] > 0.0f) ? 0.0f : acc[k];
            }
        }
    }
}

int pwg_backward(const float *x, const float *g, const float *w, float *gx, double *gw,
                 int64_t pixels, int64_t cin, int64_t cout, int64_t mask, int64_t threads)
{
    if (pixels < 1 || cin < 1 || cout < 1 || cin > MAX_C || cout > MAX_C || threads < 1)
        return 1;
    /* threads take whole chunks of FLUSH pixels, so each float32 partial sum covers the same
     * pixels whatever the number of threads */
    const int64_t chunks = (pixels + FLUSH - 1) / FLUSH, size = cin * cout;
    if (threads > chunks)
        threads = chunks;
    double *partial = calloc((size_t)(threads * size), sizeof(double));
    float *scratch = calloc((size_t)(threads * size), sizeof(float));
    if (partial == NULL || scratch == NULL) {
        free(partial);
        free(scratch);
        return 2;
    }
#pragma omp parallel num_threads(threads)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        double *mine = partial + t * size;
        float *gw32 = scratch + t * size;
        for (int64_t chunk = t * chunks / nt; chunk < (t + 1) * chunks / nt; chunk++) {
            const int64_t end = (chunk + 1) * FLUSH < pixels ? (chunk + 1) * FLUSH : pixels;
            for (int64_t p0 = chunk * FLUSH; p0 < end; p0 += PB)
                block(x, g, w, gx, gw32, p0, end - p0 < PB ? end - p0 : PB, cin, cout, mask);
            for (int64_t k = 0; k < size; k++)
                mine[k] += gw32[k];
            memset(gw32, 0, (size_t)size * sizeof(float));
        }
    }
    memset(gw, 0, (size_t)size * sizeof(double));
    for (int64_t t = 0; t < threads; t++)
        for (int64_t k = 0; k < size; k++)
            gw[k] += partial[t * size + k];
    free(partial);
    free(scratch);
    return 0;
}
