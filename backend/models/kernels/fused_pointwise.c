/*
 * Fused "depthwise -> pointwise" evaluation of NasN cell nodes on channels-last float32 images
 * (batch 1). Used by backend/models/fast.py through ctypes; compiled on first use by
 * backend/models/kernels/__init__.py with the machine's C compiler and OpenMP.
 *
 * One call computes, for every pixel of an (H, W) image window,
 *
 *     acc = bias + sum_j adds[j] + W^T a,   a = concat_i f_i(inputs[i])
 *
 * where f_i is a depthwise convolution (kh x kw taps, dilation (dh, dw), zero padding at the
 * window's edges, no bias) of the input read through an optional ReLU, or the input itself
 * (optionally rectified). W is (K, cpad), K = the inputs' total channels, cpad a multiple of 32
 * (zero columns pad the real output width). Channel ranges of acc are then written to the
 * outputs (channels last, or channel planes), each optionally through a ReLU. Every
 * intermediate stays in a few kilobytes per thread, so each node costs one pass over its inputs
 * and outputs in memory instead of one per convolution, addition and ReLU.
 *
 * With AVX-512 (compiled with -march=native on a machine that has it) the depthwise sums keep
 * 8 pixels x 16 channels in registers (taps three wide: each input vector loaded once for up
 * to three pixels) and the small GEMM 8 pixels x 32 channels; with AVX2 + FMA (16 registers of
 * 8 floats) the depthwise sums keep 8 pixels x 8 channels for taps three wide (the same reuse)
 * and 4 pixels x 16 channels otherwise, and the GEMM 6 (+ 2) pixels x 16 channels; elsewhere
 * plain C loops compute the same sums (correct, not tuned). On both vector paths, outputs that
 * are whole 32-channel blocks (AVX-512: also channel planes within one) go from the GEMM's
 * registers to memory, and the first memory reads of the block PF_AHEAD blocks on are
 * prefetched. Calls that write only channel planes and add nothing (the head's 18 taps) take, on
 * both vector paths, a GEMM turned around: 32 (AVX-512) or 16 (AVX2) pixels of one output
 * channel per register pair, only the channels written computed (run_planes). Pixels run in
 * parallel over OpenMP threads.
 *
 * The sums are the same as PyTorch's, in a different order (float32 rounding differences).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#define FP_VECTOR_BITS 512
#define DW_STEP 16     /* channels per register block of depthwise_block */
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FP_VECTOR_BITS 256
#define DW_STEP 8
#else
#define FP_VECTOR_BITS 0
#endif

#define PB 8          /* pixels per block (rows of the small GEMM) */
#define MAX_K 1024    /* largest total input width */
#define MAX_CPAD 512  /* largest padded output width */
#ifndef PF_AHEAD
#define PF_AHEAD 2    /* blocks ahead that the vector paths prefetch */
#endif

typedef struct {
    const float *data;  /* (H, W, channels), dense */
    int64_t channels;
    int64_t relu;       /* read through a ReLU */
    const float *dw;    /* depthwise taps (kh * kw, channels), tap-major; NULL = no convolution */
    int64_t kh, kw, dil_h, dil_w;
} fp_input;

typedef struct {
    float *data;        /* (H, W, channels) dense, or with plane > 0 (channels, H, W) planes */
    int64_t channels;
    int64_t offset;     /* first channel of acc written here */
    int64_t relu;       /* write max(acc, 0) */
    int64_t plane;      /* 0: channels last; else the distance between channel planes (floats) */
} fp_output;

int fp_abi_version(void) { return 2; }  /* bumped with any change of fp_run's arguments */

int fp_vector_bits(void)  /* 512 / 256 where the AVX-512 / AVX2 paths were compiled in, else 0 */
{
    return FP_VECTOR_BITS;
}

static inline float relu1(float v) { return v > 0.0f ? v : 0.0f; }

/* dst[0:n] = src[0:n], rectified if relu (short rows: no library call) */
static inline void copy_row(float *dst, const float *src, int64_t n, int64_t relu)
{
    int64_t k = 0;
#if FP_VECTOR_BITS == 512
    const __m512 zero = _mm512_setzero_ps();
    if (relu)
        for (; k + 16 <= n; k += 16)
            _mm512_storeu_ps(dst + k, _mm512_max_ps(_mm512_loadu_ps(src + k), zero));
    else
        for (; k + 16 <= n; k += 16)
            _mm512_storeu_ps(dst + k, _mm512_loadu_ps(src + k));
#elif FP_VECTOR_BITS == 256
    const __m256 zero = _mm256_setzero_ps();
    if (relu)
        for (; k + 8 <= n; k += 8)
            _mm256_storeu_ps(dst + k, _mm256_max_ps(_mm256_loadu_ps(src + k), zero));
    else
        for (; k + 8 <= n; k += 8)
            _mm256_storeu_ps(dst + k, _mm256_loadu_ps(src + k));
#endif
    if (relu)
        for (; k < n; k++)
            dst[k] = relu1(src[k]);
    else
        for (; k < n; k++)
            dst[k] = src[k];
}

/* a[0:c] = depthwise(in)(y, x), any channel count */
static void depthwise_pixel(const fp_input *in, int64_t H, int64_t W, int64_t y, int64_t x, float *a)
{
    const int64_t c = in->channels;
    memset(a, 0, (size_t)c * sizeof(float));
    for (int64_t ty = 0; ty < in->kh; ty++) {
        const int64_t sy = y + (ty - in->kh / 2) * in->dil_h;
        if (sy < 0 || sy >= H)
            continue;
        for (int64_t tx = 0; tx < in->kw; tx++) {
            const int64_t sx = x + (tx - in->kw / 2) * in->dil_w;
            if (sx < 0 || sx >= W)
                continue;
            const float *src = in->data + (sy * W + sx) * c;
            const float *w = in->dw + (ty * in->kw + tx) * c;
            if (in->relu)
                for (int64_t k = 0; k < c; k++)
                    a[k] += w[k] * relu1(src[k]);
            else
                for (int64_t k = 0; k < c; k++)
                    a[k] += w[k] * src[k];
        }
    }
}

#if FP_VECTOR_BITS == 512
typedef __m512 fvec;  /* one register of floats, and its operations, for code shared by both vector paths */
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VFMA _mm512_fmadd_ps
#define VMAX _mm512_max_ps
#define VZERO _mm512_setzero_ps
#define VLEN 16
#define VLOADA _mm512_load_ps
#define VSTOREA _mm512_store_ps
#define VSET1 _mm512_set1_ps
#elif FP_VECTOR_BITS == 256
typedef __m256 fvec;
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VFMA _mm256_fmadd_ps
#define VMAX _mm256_max_ps
#define VZERO _mm256_setzero_ps
#define VLEN 8
#define VLOADA _mm256_load_ps
#define VSTOREA _mm256_store_ps
#define VSET1 _mm256_set1_ps
#endif

#if FP_VECTOR_BITS
/* Taps three wide at column dilation d, a whole block away from the edges: the PB pixels of one
 * register-wide channel slice (16 channels with AVX-512, 8 with AVX2) in PB accumulators, each
 * input vector of a tap row loaded (and rectified) once and used by up to three output pixels
 * (PB + 2 d loads per tap row instead of 3 PB; AVX2: 8 accumulators, 3 weights and the input
 * in 12 of the 16 registers). */
static inline __attribute__((always_inline)) void depthwise_slice3(
    const fp_input *in, int64_t H, int64_t W, int64_t y, int64_t x0, int64_t k0,
    float *a, int64_t lda, const int relu, const int d)
{
    const int64_t c = in->channels;
    const fvec zero = VZERO();
    fvec r[PB];
    for (int p = 0; p < PB; p++)
        r[p] = zero;
    for (int64_t ty = 0; ty < in->kh; ty++) {
        const int64_t sy = y + (ty - in->kh / 2) * in->dil_h;
        if (sy < 0 || sy >= H)
            continue;
        const float *src = in->data + (sy * W + x0 - d) * c + k0;
        const float *wt = in->dw + ty * 3 * c + k0;
        const fvec w0 = VLOAD(wt), w1 = VLOAD(wt + c), w2 = VLOAD(wt + 2 * c);
        for (int j = 0; j < PB + 2 * d; j++) {  /* input x0 - d + j feeds outputs j - tx d */
            fvec v = VLOAD(src + j * c);
            if (relu)
                v = VMAX(v, zero);
            if (j < PB)
                r[j] = VFMA(w0, v, r[j]);
            if (j >= d && j - d < PB)
                r[j - d] = VFMA(w1, v, r[j - d]);
            if (j >= 2 * d)
                r[j - 2 * d] = VFMA(w2, v, r[j - 2 * d]);
        }
    }
    for (int p = 0; p < PB; p++)
        VSTORE(a + p * lda + k0, r[p]);
}
#endif

#if FP_VECTOR_BITS == 512
/* The taps of one 16-channel slice of the np (<= PB) pixels of a block, summed in registers:
 * one accumulator per pixel (no spills: 8 accumulators, 8 loads and a weight in 32 registers);
 * with edge, taps outside the window's columns are skipped pixel by pixel. */
static inline __attribute__((always_inline)) void depthwise_slice(
    const fp_input *in, int64_t H, int64_t W, int64_t y, int64_t x0, int64_t k0, int64_t np,
    float *a, int64_t lda, const int relu, const int edge)
{
    const int64_t c = in->channels;
    const __m512 zero = _mm512_setzero_ps();
    __m512 r[PB];
    for (int p = 0; p < PB; p++)
        r[p] = zero;
    for (int64_t ty = 0; ty < in->kh; ty++) {
        const int64_t sy = y + (ty - in->kh / 2) * in->dil_h;
        if (sy < 0 || sy >= H)
            continue;
        const float *row = in->data + sy * W * c + k0;
        for (int64_t tx = 0; tx < in->kw; tx++) {
            const int64_t ox = (tx - in->kw / 2) * in->dil_w;
            const __m512 w = _mm512_loadu_ps(in->dw + (ty * in->kw + tx) * c + k0);
            const float *src = row + (x0 + ox) * c;
            for (int p = 0; p < PB; p++) {
                if (edge && (p >= np || x0 + p + ox < 0 || x0 + p + ox >= W))
                    continue;
                __m512 v = _mm512_loadu_ps(src + p * c);
                if (relu)
                    v = _mm512_max_ps(v, zero);
                r[p] = _mm512_fmadd_ps(w, v, r[p]);
            }
        }
    }
    for (int p = 0; p < np; p++)
        _mm512_storeu_ps(a + p * lda + k0, r[p]);
}

#define DW3_CASE(D)                                                                           \
    case D:                                                                                   \
        if (in->relu)                                                                         \
            depthwise_slice3(in, H, W, y, x0, k0, a, lda, 1, D);                              \
        else                                                                                  \
            depthwise_slice3(in, H, W, y, x0, k0, a, lda, 0, D);                              \
        continue;

/* a[p][0:c] = depthwise(in)(y, x0 + p) for the np pixels of a block, c a multiple of DW_STEP
 * (16); blocks whose taps reach past the window's columns (or partial blocks) take the edge
 * variant. */
static void depthwise_block(const fp_input *in, int64_t H, int64_t W, int64_t y, int64_t x0,
                            int64_t np, float *a, int64_t lda)
{
    const int64_t reach = (in->kw / 2) * in->dil_w;
    const int edge = np < PB || x0 - reach < 0 || x0 + PB - 1 + reach >= W;
    for (int64_t k0 = 0; k0 < in->channels; k0 += 16) {
        if (!edge && in->kw == 3)
            switch (in->dil_w) {
                DW3_CASE(1)
                DW3_CASE(2)
                DW3_CASE(3)
                DW3_CASE(4)
                default:
                    break;
            }
        if (edge) {
            if (in->relu)
                depthwise_slice(in, H, W, y, x0, k0, np, a, lda, 1, 1);
            else
                depthwise_slice(in, H, W, y, x0, k0, np, a, lda, 0, 1);
        } else if (in->relu) {
            depthwise_slice(in, H, W, y, x0, k0, PB, a, lda, 1, 0);
        } else {
            depthwise_slice(in, H, W, y, x0, k0, PB, a, lda, 0, 0);
        }
    }
}
#elif FP_VECTOR_BITS == 256
#define DW3_AVX2_CASE(D)                                                                      \
    case D:                                                                                   \
        for (int64_t k0 = 0; k0 < c; k0 += 8)                                                 \
            if (in->relu)                                                                     \
                depthwise_slice3(in, H, W, y, x0, k0, a, lda, 1, D);                          \
            else                                                                              \
                depthwise_slice3(in, H, W, y, x0, k0, a, lda, 0, D);                          \
        return;

/* The same with AVX2, a whole block away from the edges: c a multiple of DW_STEP (8); taps
 * three wide at column dilations 1-4 as above, else the PB pixels in two halves of 4, each
 * half's two 8-channel slices summed in 8 registers over the taps (with 8 pixels x 1 slice
 * the compiler spilled accumulators: 8 accumulators + 8 hoisted loads > 16 registers). */
static void depthwise_block(const fp_input *in, int64_t H, int64_t W, int64_t y, int64_t x0,
                            float *a, int64_t lda)
{
    const int64_t c = in->channels;
    const __m256 zero = _mm256_setzero_ps();
    if (in->kw == 3)
        switch (in->dil_w) {
            DW3_AVX2_CASE(1)
            DW3_AVX2_CASE(2)
            DW3_AVX2_CASE(3)
            DW3_AVX2_CASE(4)
            default:
                break;
        }
    for (int64_t k0 = 0; k0 < c; k0 += 16) {
        const int two = k0 + 16 <= c;
        for (int h = 0; h < PB; h += 4) {
            __m256 r[4][2];
            for (int p = 0; p < 4; p++)
                r[p][0] = r[p][1] = zero;
            for (int64_t ty = 0; ty < in->kh; ty++) {
                const int64_t sy = y + (ty - in->kh / 2) * in->dil_h;
                if (sy < 0 || sy >= H)
                    continue;
                const float *row = in->data + sy * W * c + k0;
                for (int64_t tx = 0; tx < in->kw; tx++) {
                    const int64_t ox = (tx - in->kw / 2) * in->dil_w;
                    const float *wt = in->dw + (ty * in->kw + tx) * c + k0;
                    const __m256 w0 = _mm256_loadu_ps(wt), w1 = two ? _mm256_loadu_ps(wt + 8) : zero;
                    const float *src = row + (x0 + h + ox) * c;
                    if (in->relu) {
                        for (int p = 0; p < 4; p++) {
                            r[p][0] = _mm256_fmadd_ps(w0, _mm256_max_ps(_mm256_loadu_ps(src + p * c), zero), r[p][0]);
                            if (two)
                                r[p][1] = _mm256_fmadd_ps(w1, _mm256_max_ps(_mm256_loadu_ps(src + p * c + 8), zero), r[p][1]);
                        }
                    } else {
                        for (int p = 0; p < 4; p++) {
                            r[p][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(src + p * c), r[p][0]);
                            if (two)
                                r[p][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(src + p * c + 8), r[p][1]);
                        }
                    }
                }
            }
            for (int p = 0; p < 4; p++) {
                _mm256_storeu_ps(a + (h + p) * lda + k0, r[p][0]);
                if (two)
                    _mm256_storeu_ps(a + (h + p) * lda + k0 + 8, r[p][1]);
            }
        }
    }
}
#endif

#if FP_VECTOR_BITS == 256
/* acc[p][0:16] += sum_k a[p][k] * w[k][0:16] for p < n (n <= 6; inlined with a constant n) */
static inline __attribute__((always_inline)) void gemm_rows_avx2(
    const float *a, int64_t lda, int64_t K, const float *w, int64_t ldw, float *acc, int64_t ldc, const int n)
{
    __m256 r[6][2];
    for (int p = 0; p < n; p++) {
        r[p][0] = _mm256_loadu_ps(acc + p * ldc);
        r[p][1] = _mm256_loadu_ps(acc + p * ldc + 8);
    }
    for (int64_t k = 0; k < K; k++) {
        const __m256 w0 = _mm256_loadu_ps(w + k * ldw), w1 = _mm256_loadu_ps(w + k * ldw + 8);
        for (int p = 0; p < n; p++) {
            const __m256 b = _mm256_broadcast_ss(a + p * lda + k);
            r[p][0] = _mm256_fmadd_ps(b, w0, r[p][0]);
            r[p][1] = _mm256_fmadd_ps(b, w1, r[p][1]);
        }
    }
    for (int p = 0; p < n; p++) {
        _mm256_storeu_ps(acc + p * ldc, r[p][0]);
        _mm256_storeu_ps(acc + p * ldc + 8, r[p][1]);
    }
}
#endif

/* acc[p][0:32] += sum_k a[p][k] * w[k][0:32] for p < PB; rows are lda / ldc apart */
static void gemm_block32(const float *a, int64_t lda, int64_t K, const float *w, int64_t ldw,
                         float *acc, int64_t ldc)
{
#if FP_VECTOR_BITS == 512
    __m512 r[PB][2];
    for (int p = 0; p < PB; p++) {
        r[p][0] = _mm512_loadu_ps(acc + p * ldc);
        r[p][1] = _mm512_loadu_ps(acc + p * ldc + 16);
    }
    for (int64_t k = 0; k < K; k++) {
        const __m512 w0 = _mm512_loadu_ps(w + k * ldw), w1 = _mm512_loadu_ps(w + k * ldw + 16);
        for (int p = 0; p < PB; p++) {
            const __m512 b = _mm512_set1_ps(a[p * lda + k]);
            r[p][0] = _mm512_fmadd_ps(b, w0, r[p][0]);
            r[p][1] = _mm512_fmadd_ps(b, w1, r[p][1]);
        }
    }
    for (int p = 0; p < PB; p++) {
        _mm512_storeu_ps(acc + p * ldc, r[p][0]);
        _mm512_storeu_ps(acc + p * ldc + 16, r[p][1]);
    }
#elif FP_VECTOR_BITS == 256
    /* 16 channels at a time, pixels in groups of 6 and 2: 12 accumulators (more independent
     * chains than FMA latency x ports), 2 weight rows and 1 broadcast in 15 of 16 registers */
    for (int h = 0; h < 32; h += 16) {
        gemm_rows_avx2(a, lda, K, w + h, ldw, acc + h, ldc, 6);
        gemm_rows_avx2(a + 6 * lda, lda, K, w + h, ldw, acc + 6 * ldc + h, ldc, PB - 6);
    }
#else
    for (int p = 0; p < PB; p++) {
        float r[32];
        memcpy(r, acc + p * ldc, sizeof r);
        for (int64_t k = 0; k < K; k++) {
            const float b = a[p * lda + k];
            const float *wk = w + k * ldw;
            for (int o = 0; o < 32; o++)
                r[o] += b * wk[o];
        }
        memcpy(acc + p * ldc, r, sizeof r);
    }
#endif
}

#if FP_VECTOR_BITS == 512
/* One whole block of PB pixels when every output is one aligned 32-channel block of dense
 * channels-last pixels: each 32-wide block of the accumulator starts from the bias and the
 * addends and goes to its outputs from registers (no accumulator round trip through memory). */
static void block_in_registers(const float *a, int64_t K, const float *weight, const float *bias,
                               int64_t cpad, int64_t n_add, const float *const *adds,
                               int64_t add_channels, int64_t n_out, const fp_output *outputs, int64_t pix)
{
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t o0 = 0; o0 < cpad; o0 += 32) {
        __m512 r[PB][2];
        const __m512 b0 = bias ? _mm512_loadu_ps(bias + o0) : zero;
        const __m512 b1 = bias ? _mm512_loadu_ps(bias + o0 + 16) : zero;
        for (int p = 0; p < PB; p++) {
            r[p][0] = b0;
            r[p][1] = b1;
        }
        if (o0 < add_channels)
            for (int64_t j = 0; j < n_add; j++) {
                const float *src = adds[j] + pix * add_channels + o0;
                for (int p = 0; p < PB; p++) {
                    r[p][0] = _mm512_add_ps(r[p][0], _mm512_loadu_ps(src + p * add_channels));
                    r[p][1] = _mm512_add_ps(r[p][1], _mm512_loadu_ps(src + p * add_channels + 16));
                }
            }
        const float *w = weight + o0;
        for (int64_t k = 0; k < K; k++) {
            const __m512 w0 = _mm512_loadu_ps(w + k * cpad), w1 = _mm512_loadu_ps(w + k * cpad + 16);
            for (int p = 0; p < PB; p++) {
                const __m512 b = _mm512_set1_ps(a[p * K + k]);
                r[p][0] = _mm512_fmadd_ps(b, w0, r[p][0]);
                r[p][1] = _mm512_fmadd_ps(b, w1, r[p][1]);
            }
        }
        float tile[PB * 32] __attribute__((aligned(64)));  /* the block, for channel-plane outputs */
        int tiled = 0;
        for (int64_t o = 0; o < n_out; o++) {
            const fp_output *out = outputs + o;
            if (out->offset - out->offset % 32 != o0)
                continue;
            if (out->plane) {  /* channels of this block as planes: 8 pixels of a channel per store */
                if (!tiled) {
                    for (int p = 0; p < PB; p++) {
                        _mm512_store_ps(tile + p * 32, r[p][0]);
                        _mm512_store_ps(tile + p * 32 + 16, r[p][1]);
                    }
                    tiled = 1;
                }
                const __m256i rows = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
                const __m256 zero8 = _mm256_setzero_ps();
                float *dst = out->data + pix;  /* channel k of pixel pix at k * plane + pix */
                for (int64_t k = 0; k < out->channels; k++) {
                    __m256 v = _mm256_i32gather_ps(tile + out->offset % 32 + k, rows, 4);
                    _mm256_storeu_ps(dst + k * out->plane, out->relu ? _mm256_max_ps(v, zero8) : v);
                }
                continue;
            }
            float *dst = out->data + pix * 32;
            for (int p = 0; p < PB; p++) {
                _mm512_stream_ps(dst + p * 32, out->relu ? _mm512_max_ps(r[p][0], zero) : r[p][0]);
                _mm512_stream_ps(dst + p * 32 + 16, out->relu ? _mm512_max_ps(r[p][1], zero) : r[p][1]);
            }
        }
    }
}
#endif

#if FP_VECTOR_BITS == 256
/* AVX2: n (6 or 2) pixels of 16 channels (col..col+15) of the accumulator in registers, from the
 * bias and the addends, to the channels-last outputs of their 32-channel block */
static inline __attribute__((always_inline)) void rows_in_registers_avx2(
    const float *a, int64_t K, const float *weight, const float *bias, int64_t cpad, int64_t n_add,
    const float *const *adds, int64_t add_channels, int64_t n_out, const fp_output *outputs, int64_t pix,
    int64_t col, const int n)
{
    __m256 r[6][2];
    const __m256 zero = _mm256_setzero_ps();
    const __m256 b0 = bias ? _mm256_loadu_ps(bias + col) : zero, b1 = bias ? _mm256_loadu_ps(bias + col + 8) : zero;
    for (int p = 0; p < n; p++) {
        r[p][0] = b0;
        r[p][1] = b1;
    }
    for (int64_t k = 0; k < K; k++) {
        const __m256 w0 = _mm256_loadu_ps(weight + k * cpad + col), w1 = _mm256_loadu_ps(weight + k * cpad + col + 8);
        for (int p = 0; p < n; p++) {
            const __m256 b = _mm256_broadcast_ss(a + p * K + k);
            r[p][0] = _mm256_fmadd_ps(b, w0, r[p][0]);
            r[p][1] = _mm256_fmadd_ps(b, w1, r[p][1]);
        }
    }
    if (col < add_channels)
        for (int64_t j = 0; j < n_add; j++)
            for (int p = 0; p < n; p++) {
                const float *src = adds[j] + (pix + p) * add_channels + col;
                r[p][0] = _mm256_add_ps(r[p][0], _mm256_loadu_ps(src));
                r[p][1] = _mm256_add_ps(r[p][1], _mm256_loadu_ps(src + 8));
            }
    for (int64_t o = 0; o < n_out; o++) {
        const fp_output *out = outputs + o;
        if (out->offset != col - col % 32)
            continue;
        float *dst = out->data + pix * 32 + col % 32;
        for (int p = 0; p < n; p++) {
            _mm256_stream_ps(dst + p * 32, out->relu ? _mm256_max_ps(r[p][0], zero) : r[p][0]);
            _mm256_stream_ps(dst + p * 32 + 8, out->relu ? _mm256_max_ps(r[p][1], zero) : r[p][1]);
        }
    }
}

static void block_in_registers(const float *a, int64_t K, const float *weight, const float *bias,
                               int64_t cpad, int64_t n_add, const float *const *adds,
                               int64_t add_channels, int64_t n_out, const fp_output *outputs, int64_t pix)
{
    for (int64_t col = 0; col < cpad; col += 16) {
        rows_in_registers_avx2(a, K, weight, bias, cpad, n_add, adds, add_channels, n_out, outputs, pix, col, 6);
        rows_in_registers_avx2(a + 6 * K, K, weight, bias, cpad, n_add, adds, add_channels, n_out, outputs, pix + 6,
                               col, PB - 6);
    }
}
#endif

/* a[p][0:K] (rows K apart) = every input's (convolved, rectified) channels at pixel (y, x0 + p),
 * p < np: the GEMM's left operand */
static void left_operand(const fp_input *inputs, int64_t n_in, int64_t H, int64_t W, int64_t y, int64_t x0,
                         int64_t np, float *a, int64_t K)
{
    int64_t koff = 0;
    for (int64_t i = 0; i < n_in; i++) {
        const fp_input *in = inputs + i;
        const int64_t c = in->channels;
#if FP_VECTOR_BITS == 512
        if (in->dw && c % DW_STEP == 0) {
            depthwise_block(in, H, W, y, x0, np, a + koff, K);
            koff += c;
            continue;
        }
#elif FP_VECTOR_BITS == 256
        const int64_t reach = (in->kw / 2) * in->dil_w;
        if (in->dw && c % DW_STEP == 0 && np == PB && x0 - reach >= 0 && x0 + PB - 1 + reach < W) {
            depthwise_block(in, H, W, y, x0, a + koff, K);
            koff += c;
            continue;
        }
#endif
        for (int64_t p = 0; p < np; p++) {
            float *dst = a + p * K + koff;
            if (in->dw)
                depthwise_pixel(in, H, W, y, x0 + p, dst);
            else
                copy_row(dst, in->data + (y * W + x0 + p) * c, c, in->relu);
        }
        koff += c;
    }
}

#if FP_VECTOR_BITS
/* Outputs that are all channel planes (the head's taps: 18 of a 32-wide block) and no addends:
 * the GEMM turned around, two registers per output channel holding PV pixels of that channel
 * (PV consecutive floats of its plane), so only the channels written are computed and each goes
 * to its plane in two stores. The left operand of PV pixels is transposed (pixels fastest) first.
 * Per input channel: 2 vector loads and one broadcast weight per output channel for 2 FMAs. The
 * ISA-specific parts (PV, PLANES_CHUNK, transpose_left, store_plane) follow, then planes_chunk
 * and run_planes, the same for both. */
#define PLANES_MAX_K 256  /* largest input width it takes */
#endif

#if FP_VECTOR_BITS == 512
#define PV 32             /* pixels per block of the planes path */
#define PLANES_CHUNK 12   /* output channels per pass over the transposed operand (24 accumulators) */

/* aT[k][0:16] = a[0:16][k] for k < K (a's rows K apart, aT's PV floats apart): 16 x 16 tiles
 * transposed in registers */
static void transpose_16(const float *a, int64_t K, float *aT)
{
    int64_t k0 = 0;
    for (; k0 + 16 <= K; k0 += 16) {
        __m512 r[16], t[16];
        for (int p = 0; p < 16; p++)
            r[p] = _mm512_loadu_ps(a + p * K + k0);
        for (int p = 0; p < 16; p += 2) {  /* pairs of rows interleaved by element */
            t[p] = _mm512_unpacklo_ps(r[p], r[p + 1]);
            t[p + 1] = _mm512_unpackhi_ps(r[p], r[p + 1]);
        }
        for (int p = 0; p < 16; p += 4) {  /* then by pairs of elements: 4 rows per 128-bit lane */
            r[p] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[p]), _mm512_castps_pd(t[p + 2])));
            r[p + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[p]), _mm512_castps_pd(t[p + 2])));
            r[p + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[p + 1]), _mm512_castps_pd(t[p + 3])));
            r[p + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[p + 1]), _mm512_castps_pd(t[p + 3])));
        }
        /* r[4g + j], 128-bit lane l: rows 4g..4g+3 of column 4l + j; gather the four lanes of
         * column 4l + j from r[j], r[4 + j], r[8 + j], r[12 + j] */
        for (int j = 0; j < 4; j++) {
            const __m512 lo0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);       /* lanes 0,1 | 0,1 */
            const __m512 hi0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);       /* lanes 2,3 | 2,3 */
            const __m512 lo1 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
            const __m512 hi1 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
            _mm512_store_ps(aT + (k0 + j) * PV, _mm512_shuffle_f32x4(lo0, lo1, 0x88));       /* lane 0 */
            _mm512_store_ps(aT + (k0 + 4 + j) * PV, _mm512_shuffle_f32x4(lo0, lo1, 0xDD));   /* lane 1 */
            _mm512_store_ps(aT + (k0 + 8 + j) * PV, _mm512_shuffle_f32x4(hi0, hi1, 0x88));   /* lane 2 */
            _mm512_store_ps(aT + (k0 + 12 + j) * PV, _mm512_shuffle_f32x4(hi0, hi1, 0xDD));  /* lane 3 */
        }
    }
    for (; k0 < K; k0++)
        for (int p = 0; p < 16; p++)
            aT[k0 * PV + p] = a[p * K + k0];
}

/* aT[k][0:32] = a[0:32][k] (aT's rows PV floats apart) */
static void transpose_left(const float *a, int64_t K, float *aT)
{
    transpose_16(a, K, aT);
    transpose_16(a + 16 * K, K, aT + 16);
}

/* dst[0:np] = src[0:np] (np <= PV), rectified if relu */
static inline __attribute__((always_inline)) void store_plane(float *dst, const float *src, int64_t np, int relu)
{
    const __m512 zero = _mm512_setzero_ps();
    __m512 v0 = _mm512_load_ps(src), v1 = _mm512_load_ps(src + 16);
    if (relu) {
        v0 = _mm512_max_ps(v0, zero);
        v1 = _mm512_max_ps(v1, zero);
    }
    _mm512_mask_storeu_ps(dst, (__mmask16)(np >= 16 ? 0xFFFF : (1u << np) - 1), v0);
    _mm512_mask_storeu_ps(dst + 16, (__mmask16)(np >= PV ? 0xFFFF : np <= 16 ? 0 : (1u << (np - 16)) - 1), v1);
}
#elif FP_VECTOR_BITS == 256
/* AVX2 (16 registers of 8 floats): 16 pixels of a channel per register pair, up to 6 channels
 * per pass (12 accumulators, 2 operand vectors and a broadcast weight). */
#define PV 16             /* pixels per block of the planes path */
#define PLANES_CHUNK 6    /* output channels per pass over the transposed operand */

/* aT[k][0:16] = a[0:16][k] for k < K (a's rows K apart): 8 x 8 tiles transposed in registers */
static void transpose_left(const float *a, int64_t K, float *aT)
{
    for (int p0 = 0; p0 < 16; p0 += 8) {
        int64_t k0 = 0;
        for (; k0 + 8 <= K; k0 += 8) {
            __m256 r[8], t[8], u[8];
            for (int p = 0; p < 8; p++)
                r[p] = _mm256_loadu_ps(a + (p0 + p) * K + k0);
            for (int p = 0; p < 8; p += 2) {  /* pairs of rows interleaved by element */
                t[p] = _mm256_unpacklo_ps(r[p], r[p + 1]);
                t[p + 1] = _mm256_unpackhi_ps(r[p], r[p + 1]);
            }
            for (int g = 0; g < 8; g += 4) {  /* u[g + j]: rows g..g+3 of columns j (low half), 4 + j (high) */
                u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
                u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
                u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
                u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
            }
            for (int j = 0; j < 4; j++) {
                _mm256_store_ps(aT + (k0 + j) * PV + p0, _mm256_permute2f128_ps(u[j], u[4 + j], 0x20));
                _mm256_store_ps(aT + (k0 + 4 + j) * PV + p0, _mm256_permute2f128_ps(u[j], u[4 + j], 0x31));
            }
        }
        for (; k0 < K; k0++)
            for (int p = 0; p < 8; p++)
                aT[k0 * PV + p0 + p] = a[(p0 + p) * K + k0];
    }
}

/* dst[0:np] = src[0:np] (np <= PV), rectified if relu */
static inline __attribute__((always_inline)) void store_plane(float *dst, const float *src, int64_t np, int relu)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 v0 = _mm256_load_ps(src), v1 = _mm256_load_ps(src + 8);
    if (relu) {
        v0 = _mm256_max_ps(v0, zero);
        v1 = _mm256_max_ps(v1, zero);
    }
    if (np == PV) {
        _mm256_storeu_ps(dst, v0);
        _mm256_storeu_ps(dst + 8, v1);
        return;
    }
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(dst, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)np), lanes), v0);
    if (np > 8)
        _mm256_maskstore_ps(dst + 8, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)np - 8), lanes), v1);
}
#endif

#if FP_VECTOR_BITS
/* tile[o][0:PV] = bias[o] + sum_k aT[k][0:PV] w[k][o], o < n (inlined with constant n) */
static inline __attribute__((always_inline)) void planes_chunk(
    const float *aT, int64_t K, const float *w, int64_t ldw, const float *bias, float *tile, const int n)
{
    fvec r[PLANES_CHUNK][2];  /* in registers: the loops over o unrolled (GCC kept r in memory otherwise) */
#pragma GCC unroll 12
    for (int o = 0; o < n; o++)
        r[o][0] = r[o][1] = bias ? VSET1(bias[o]) : VZERO();
    for (int64_t k = 0; k < K; k++) {
        const fvec v0 = VLOADA(aT + k * PV), v1 = VLOADA(aT + k * PV + VLEN);
        const float *wk = w + k * ldw;
#pragma GCC unroll 12
        for (int o = 0; o < n; o++) {
            const fvec b = VSET1(wk[o]);
            r[o][0] = VFMA(v0, b, r[o][0]);
            r[o][1] = VFMA(v1, b, r[o][1]);
        }
    }
#pragma GCC unroll 12
    for (int o = 0; o < n; o++) {
        VSTOREA(tile + o * PV, r[o][0]);
        VSTOREA(tile + o * PV + VLEN, r[o][1]);
    }
}

#define PC_CASE(N) case N: planes_chunk(aT, K, w, ldw, bias, tile, N); break;

static void planes_chunk_n(const float *aT, int64_t K, const float *w, int64_t ldw, const float *bias,
                           float *tile, int64_t n)
{
    switch (n) {
        PC_CASE(1) PC_CASE(2) PC_CASE(3) PC_CASE(4) PC_CASE(5) PC_CASE(6)
#if PLANES_CHUNK > 6
        PC_CASE(7) PC_CASE(8) PC_CASE(9) PC_CASE(10) PC_CASE(11) PC_CASE(12)
#endif
        default: break;
    }
}

/* The first memory reads of a block of `pixels` pixels at (y, nx), into L2: each input's
 * lowest tap row */
static inline __attribute__((always_inline)) void prefetch_inputs(
    const fp_input *inputs, int64_t n_in, int64_t H, int64_t W, int64_t y, int64_t nx, int64_t pixels)
{
    for (int64_t i = 0; i < n_in; i++) {
        const fp_input *in = inputs + i;
        const int64_t sy = in->dw ? y + (in->kh / 2) * in->dil_h : y;
        if (sy < H) {
            const char *base = (const char *)(in->data + (sy * W + nx + (in->dw ? (in->kw / 2) * in->dil_w : 0)) * in->channels);
            for (int64_t b = 0; b < pixels * in->channels * 4; b += 64)
                _mm_prefetch(base + b, _MM_HINT_T1);
        }
    }
}

/* The whole call on the planes path: blocks of PV pixels along rows (the last one of a row
 * masked), the channels written in equal chunks of at most PLANES_CHUNK. */
static void run_planes(int64_t H, int64_t W, int64_t n_in, const fp_input *inputs, int64_t K,
                       const float *weight, const float *bias, int64_t cpad, int64_t n_out,
                       const fp_output *outputs, int64_t threads)
{
    int64_t lo = cpad, hi = 0;  /* the channels written */
    for (int64_t o = 0; o < n_out; o++) {
        lo = outputs[o].offset < lo ? outputs[o].offset : lo;
        hi = outputs[o].offset + outputs[o].channels > hi ? outputs[o].offset + outputs[o].channels : hi;
    }
    if (hi <= lo)
        return;  /* no channel written */
    const int64_t chunks = (hi - lo + PLANES_CHUNK - 1) / PLANES_CHUNK;
    const int64_t chunk = (hi - lo + chunks - 1) / chunks;  /* 18 channels: 9 + 9 (AVX-512), 6 x 3 (AVX2) */
    const int64_t blocks = (W + PV - 1) / PV;
#pragma omp parallel num_threads(threads > 0 ? (int)threads : 1)
    {
        float a[PV * PLANES_MAX_K];
        float aT[PV * PLANES_MAX_K] __attribute__((aligned(64)));
        float tile[PV * PLANES_CHUNK] __attribute__((aligned(64)));
        memset(a, 0, sizeof(float) * PV * (size_t)K);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < H * blocks; t++) {
            const int64_t y = t / blocks, x0 = (t % blocks) * PV;
            const int64_t np = W - x0 < PV ? W - x0 : PV;
            if (x0 + (PF_AHEAD + 1) * PV <= W)  /* as fp_run's blocks, PF_AHEAD blocks on */
                prefetch_inputs(inputs, n_in, H, W, y, x0 + PF_AHEAD * PV, PV);
            for (int64_t p0 = 0; p0 < np; p0 += PB)
                left_operand(inputs, n_in, H, W, y, x0 + p0, np - p0 < PB ? np - p0 : PB, a + p0 * K, K);
            transpose_left(a, K, aT);
            for (int64_t c0 = lo; c0 < hi; c0 += chunk) {
                const int64_t n = hi - c0 < chunk ? hi - c0 : chunk;
                planes_chunk_n(aT, K, weight + c0, cpad, bias ? bias + c0 : NULL, tile, n);
                for (int64_t o = 0; o < n_out; o++) {
                    const fp_output *out = outputs + o;
                    const int64_t first = out->offset > c0 ? out->offset : c0;
                    const int64_t last = out->offset + out->channels < c0 + n ? out->offset + out->channels : c0 + n;
                    for (int64_t c = first; c < last; c++)
                        store_plane(out->data + (c - out->offset) * out->plane + y * W + x0, tile + (c - c0) * PV, np,
                                    (int)out->relu);
                }
            }
        }
    }
}
#endif

/* Returns 0, or a negative code for arguments this kernel does not take. */
int fp_run(int64_t H, int64_t W, int64_t n_in, const fp_input *inputs, int64_t n_add,
           const float *const *adds, int64_t add_channels, const float *weight, const float *bias,
           int64_t cpad, int64_t n_out, const fp_output *outputs, int64_t threads)
{
    int64_t K = 0;
    for (int64_t i = 0; i < n_in; i++)
        K += inputs[i].channels;
    if (K <= 0 || K > MAX_K || cpad <= 0 || cpad % 32 || cpad > MAX_CPAD || add_channels > cpad)
        return -1;
    for (int64_t o = 0; o < n_out; o++)
        if (outputs[o].offset < 0 || outputs[o].offset + outputs[o].channels > cpad)
            return -2;
#if FP_VECTOR_BITS
    int64_t all_planes = n_add == 0 && K <= PLANES_MAX_K;
    for (int64_t o = 0; o < n_out; o++)
        all_planes &= outputs[o].plane > 0;
    if (all_planes && n_out > 0) {
        run_planes(H, W, n_in, inputs, K, weight, bias, cpad, n_out, outputs, threads);
        return 0;
    }
#endif
    const int64_t blocks = (W + PB - 1) / PB;
    int64_t in_registers = FP_VECTOR_BITS && add_channels % 32 == 0;
    for (int64_t o = 0; o < n_out; o++)  /* every output one aligned 32-channel block, or (AVX-512) planes within one */
        in_registers &= outputs[o].plane ? FP_VECTOR_BITS == 512 && outputs[o].offset % 32 + outputs[o].channels <= 32
                        : outputs[o].channels == 32 && outputs[o].offset % 32 == 0 && ((uintptr_t)outputs[o].data & 63) == 0;

#pragma omp parallel num_threads(threads > 0 ? (int)threads : 1)
    {
        float a[PB * MAX_K];
        float acc[PB * MAX_CPAD];
        memset(a, 0, sizeof(float) * PB * (size_t)K);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < H * blocks; t++) {
            const int64_t y = t / blocks, x0 = (t % blocks) * PB;
            const int64_t np = W - x0 < PB ? W - x0 : PB;
#if FP_VECTOR_BITS
            /* the lines a block PF_AHEAD blocks on reads first from memory, into L2: its
             * inputs' lowest tap row and its addends */
            if (x0 + (PF_AHEAD + 1) * PB <= W) {
                const int64_t nx = x0 + PF_AHEAD * PB;
                prefetch_inputs(inputs, n_in, H, W, y, nx, PB);
                for (int64_t j = 0; j < n_add; j++) {
                    const char *base = (const char *)(adds[j] + (y * W + nx) * add_channels);
                    for (int64_t b = 0; b < PB * add_channels * 4; b += 64)
                        _mm_prefetch(base + b, _MM_HINT_T1);
                }
            }
#endif
            left_operand(inputs, n_in, H, W, y, x0, np, a, K);
#if FP_VECTOR_BITS
            if (in_registers && np == PB) {
                block_in_registers(a, K, weight, bias, cpad, n_add, adds, add_channels, n_out, outputs, y * W + x0);
                continue;
            }
#endif
            /* acc = bias + adds */
            for (int64_t p = 0; p < PB; p++) {
                float *row = acc + p * cpad;
                if (bias)
                    memcpy(row, bias, (size_t)cpad * sizeof(float));
                else
                    memset(row, 0, (size_t)cpad * sizeof(float));
                if (p < np)
                    for (int64_t j = 0; j < n_add; j++) {
                        const float *src = adds[j] + (y * W + x0 + p) * add_channels;
                        for (int64_t k = 0; k < add_channels; k++)
                            row[k] += src[k];
                    }
            }
            for (int64_t o0 = 0; o0 < cpad; o0 += 32)
                gemm_block32(a, K, K, weight + o0, cpad, acc + o0, cpad);
            for (int64_t o = 0; o < n_out; o++) {
                const fp_output *out = outputs + o;
                const int64_t c = out->channels;
#if FP_VECTOR_BITS == 512
                /* whole blocks of 64-byte aligned channels-last pixels: streaming stores (the
                 * output is not read in this call; no read-for-ownership of its lines) */
                if (!out->plane && c % 16 == 0 && ((uintptr_t)out->data & 63) == 0 && np == PB) {
                    const __m512 zero = _mm512_setzero_ps();
                    float *dst = out->data + (y * W + x0) * c;
                    for (int64_t p = 0; p < PB; p++)
                        for (int64_t k = 0; k < c; k += 16) {
                            __m512 v = _mm512_loadu_ps(acc + p * cpad + out->offset + k);
                            _mm512_stream_ps(dst + p * c + k, out->relu ? _mm512_max_ps(v, zero) : v);
                        }
                    continue;
                }
#elif FP_VECTOR_BITS == 256
                if (!out->plane && c % 8 == 0 && ((uintptr_t)out->data & 31) == 0 && np == PB) {
                    const __m256 zero = _mm256_setzero_ps();
                    float *dst = out->data + (y * W + x0) * c;
                    for (int64_t p = 0; p < PB; p++)
                        for (int64_t k = 0; k < c; k += 8) {
                            __m256 v = _mm256_loadu_ps(acc + p * cpad + out->offset + k);
                            _mm256_stream_ps(dst + p * c + k, out->relu ? _mm256_max_ps(v, zero) : v);
                        }
                    continue;
                }
#endif
                if (out->plane) {
                    for (int64_t k = 0; k < c; k++) {
                        float *dst = out->data + k * out->plane + y * W + x0;
                        const float *src = acc + out->offset + k;
                        for (int64_t p = 0; p < np; p++)
                            dst[p] = out->relu ? relu1(src[p * cpad]) : src[p * cpad];
                    }
                } else {
                    for (int64_t p = 0; p < np; p++)
                        copy_row(out->data + (y * W + x0 + p) * c, acc + p * cpad + out->offset, c, out->relu);
                }
            }
        }
#if FP_VECTOR_BITS
        _mm_sfence();  /* the streaming stores are visible before the threads join */
#endif
    }
    return 0;
}
