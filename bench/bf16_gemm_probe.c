/*
 * Probe (not used by the package): how much a bf16 version of the fused kernel's 1x1 part could
 * gain on a CPU with AVX512_BF16. One "K -> 32 channels + addend + ReLU" call over an H x W
 * channels-last image, timed as backend/models/kernels/fused_pointwise.c runs it in float32
 * (fp_run) and as a sketch with bf16 activations (inputs, addend and output 2 bytes a value),
 * bf16 weights in (k, k+1) pairs and AVX512_BF16 dot products accumulated in float32
 * (_mm512_dpbf16_ps: two multiply-adds per lane), 8 pixels x 32 channels per block as fp_run.
 * Prints both times and the largest difference of the bf16 output relative to the float32 one.
 *
 *   cc -O3 -march=native -fopenmp -std=gnu11 -o /tmp/bf16_gemm_probe bench/bf16_gemm_probe.c \
 *      backend/models/kernels/fused_pointwise.c -lm
 *   /tmp/bf16_gemm_probe H W K THREADS      # e.g. 320 320 32 2
 */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
typedef struct { const float *data; int64_t channels, relu; const float *dw; int64_t kh, kw, dil_h, dil_w; } fp_input;
typedef struct { float *data; int64_t channels, offset, relu, plane; } fp_output;
int fp_run(int64_t H, int64_t W, int64_t n_in, const fp_input *inputs, int64_t n_add,
           const float *const *adds, int64_t add_channels, const float *weight, const float *bias,
           int64_t cpad, int64_t n_out, const fp_output *outputs, int64_t threads);
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static float *buf(size_t n) { float *p = aligned_alloc(64, n * 4); for (size_t i = 0; i < n; i++) p[i] = (float)rand() / RAND_MAX - 0.5f; return p; }
static uint16_t *tobf(const float *f, size_t n) { uint16_t *p = aligned_alloc(64, n * 2); for (size_t i = 0; i < n; i++) { uint32_t u; memcpy(&u, f + i, 4); p[i] = u >> 16; } return p; }

static void run_bf16(int64_t npix, const uint16_t *x, int K, const uint16_t *add, const uint16_t *w2, const float *bias, uint16_t *out, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < npix / 8; b++) {
        const uint16_t *xa = x + b * 8 * K;
        if ((b + 2) * 8 < npix) for (int i = 0; i < 8 * K * 2; i += 64) _mm_prefetch((const char *)(xa + 16 * K) + i, _MM_HINT_T1);
        __m512 r[8][2];
        const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
        for (int p = 0; p < 8; p++) {
            const uint16_t *ad = add + (b * 8 + p) * 32;
            r[p][0] = _mm512_add_ps(b0, _mm512_cvtpbh_ps((__m256bh)_mm256_loadu_si256((const __m256i *)ad)));
            r[p][1] = _mm512_add_ps(b1, _mm512_cvtpbh_ps((__m256bh)_mm256_loadu_si256((const __m256i *)(ad + 16))));
        }
        for (int kk = 0; kk < K / 2; kk++) {
            const __m512bh w0 = (__m512bh)_mm512_loadu_si512(w2 + (kk * 32) * 2);
            const __m512bh w1 = (__m512bh)_mm512_loadu_si512(w2 + (kk * 32 + 16) * 2);
            for (int p = 0; p < 8; p++) {
                int32_t v; memcpy(&v, xa + p * K + 2 * kk, 4);
                const __m512bh a = (__m512bh)_mm512_set1_epi32(v);
                r[p][0] = _mm512_dpbf16_ps(r[p][0], a, w0);
                r[p][1] = _mm512_dpbf16_ps(r[p][1], a, w1);
            }
        }
        const __m512 z = _mm512_setzero_ps();
        for (int p = 0; p < 8; p++) {
            uint16_t *o = out + (b * 8 + p) * 32;
            _mm256_stream_si256((__m256i *)o, (__m256i)_mm512_cvtneps_pbh(_mm512_max_ps(r[p][0], z)));
            _mm256_stream_si256((__m256i *)(o + 16), (__m256i)_mm512_cvtneps_pbh(_mm512_max_ps(r[p][1], z)));
        }
    }
    _mm_sfence();
}

int main(int argc, char **argv) {
    int64_t H = atoi(argv[1]), W = atoi(argv[2]); int K = atoi(argv[3]); int threads = atoi(argv[4]);
    int64_t n = H * W;
    float *x = buf(n * K), *add = buf(n * 32), *y = buf(n * 32), *w = buf(K * 32), *bias = buf(32);
    uint16_t *xb = tobf(x, n * K), *addb = tobf(add, n * 32), *yb = aligned_alloc(64, n * 32 * 2);
    float *w2f = malloc(K * 32 * 4); /* pairs: [kk][o][2] */
    for (int kk = 0; kk < K / 2; kk++) for (int o = 0; o < 32; o++) { w2f[(kk * 32 + o) * 2] = w[(2 * kk) * 32 + o]; w2f[(kk * 32 + o) * 2 + 1] = w[(2 * kk + 1) * 32 + o]; }
    uint16_t *w2 = tobf(w2f, K * 32);
    fp_input in = {x, K, 0, NULL, 1, 1, 1, 1};
    fp_output out = {y, 32, 0, 1, 0};
    const float *adds[1] = {add};
    double macs = n * (double)K * 32;
    int reps = (int)(1e9 / macs) + 1;
    double bf = 1e9, fp = 1e9;
    for (int t = 0; t < 7; t++) {
        double t0 = now();
        for (int r = 0; r < reps; r++) fp_run(H, W, 1, &in, 1, adds, 32, w, bias, 32, 1, &out, threads);
        double d = (now() - t0) / reps; if (d < fp) fp = d;
        t0 = now();
        for (int r = 0; r < reps; r++) run_bf16(n, xb, K, addb, w2, bias, yb, threads);
        d = (now() - t0) / reps; if (d < bf) bf = d;
    }
    /* accuracy of the bf16 result against fp32 */
    double maxd = 0, maxv = 0;
    for (int64_t i = 0; i < n * 32; i++) { uint32_t u = (uint32_t)yb[i] << 16; float v; memcpy(&v, &u, 4); double d = fabs(v - y[i]); if (d > maxd) maxd = d; if (fabs(y[i]) > maxv) maxv = fabs(y[i]); }
    printf("%ldx%ld K%d->32 +add relu, %d threads: fp32 %.3f ms (%.1f GMAC/s), bf16 %.3f ms (%.1f GMAC/s): %.2fx; max rel diff %.1e\n",
           H, W, K, threads, fp * 1e3, macs / fp / 1e9, bf * 1e3, macs / bf / 1e9, fp / bf, maxd / maxv);
    return 0;
}
