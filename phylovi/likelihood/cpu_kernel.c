/* Fused CPU tree-likelihood kernel for phylovi (see phylovi/likelihood/cpu_kernel.py).
 *
 * Plain C99 + OpenMP, loaded with ctypes. The file includes itself (by name) twice to
 * define a float64 (suffix _f64) and a float32 (suffix _f32) variant.
 *
 * Work is split into tasks (topology b, sample s, block of patterns); a task runs
 * its topology's whole post-order pass, the site log-likelihoods and, for the
 * gradient, the pre-order pass, on per-thread scratch that holds only its block.
 * (With a gradient and at least 4 (b, s) pairs per thread, a task takes all blocks
 * of one pair, so that it alone writes that pair's gradient rows.)
 * Tasks are independent: no barrier between levels, nothing of size
 * n_nodes x n_patterns stored. Partials are [C][4][block] planes (states as
 * separate pattern-contiguous planes), so every inner loop runs over patterns
 * and vectorises at full width in both precisions.
 *
 * Node program (built in Python from the Schedule), node index n in
 * [0, n_nodes), nodes grouped by topology (topo_off) in post-order:
 *   node_nch[n]       2 or 3 children
 *   ch_ref[3n + k]    >= 0: node index of an internal child; < 0: -(taxon + 1)
 *   ch_edge[3n + k]   global edge row (b * n_edges + e) of the child
 *   slot[n]           the node's partials buffer (unless a gradient pass keeps every
 *                     node's, see pv_loglik): a buffer is reused once the parent has
 *                     read it, so the pass keeps only a few buffers (in cache) instead
 *                     of one per node
 *   up_slot[n]        the gradient's buffer of the node's upper partials (-1 at roots),
 *                     written in the parent's pre-order step and read in the node's;
 *                     reused in the same way
 * and split_blocks, which keeps gradient tasks split by pattern block (see pv_loglik).
 */
#ifndef PV_REAL

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define PV_RESTRICT __restrict__

/* float64 partials are rescaled only below this (see the post-order pass); tests build
 * the kernel with a larger value, so that small trees take the rescaling paths too */
#ifndef PV_F64_RESCALE_BELOW
#define PV_F64_RESCALE_BELOW 1e-100
#endif

/* With AVX-512's 32 vector registers the 4x4 sweeps take all four rows at once (16
 * accumulators or coefficients, 4 inputs, 4 outputs); AVX2's 16 registers would spill, so
 * there they take two rows per sweep and read their inputs twice. */
#if defined(__AVX512F__) && !defined(PV_TWO_ROW_SWEEPS)
#define PV_FOUR_ROWS 1
#else
#define PV_FOUR_ROWS 0
#endif

typedef struct {
    int n_topologies, n_samples, n_categories, n_patterns, n_padded, block, split_blocks;
    const int32_t *topo_off, *node_nch, *ch_ref, *ch_edge, *slot, *up_slot;
} pv_plan;

/* A state far less likely than the pattern's others can leave subnormal partials, and
 * on Intel cores every operation on one costs a microcode assist: in float32 the
 * gradient pass ran 7x slower for them on a 2-core Emerald Rapids Xeon (a 2-core AMD
 * EPYC showed no such slowdown). They carry no weight next to the pattern's largest
 * partial, which rescaling keeps far above the normal range's floor, so the kernel's
 * threads flush them to zero (FTZ and DAZ in MXCSR) and give the caller's mode back on
 * the way out. */
#if defined(__SSE__)
#include <xmmintrin.h>
static unsigned int pv_flush_subnormals(void)
{
    const unsigned int mode = _mm_getcsr();
    _mm_setcsr(mode | 0x8000u | 0x0040u); /* flush-to-zero | denormals-are-zero */
    return mode;
}
static void pv_restore_fp_mode(unsigned int mode) { _mm_setcsr(mode); }
#else
static unsigned int pv_flush_subnormals(void) { return 0; }
static void pv_restore_fp_mode(unsigned int mode) { (void)mode; }
#endif

/* The threads of this call: n (the parallel regions take it as their num_threads), or
 * the runtime's default. Not omp_set_num_threads, which would change the caller's
 * setting (torch's) for good. */
static int pv_threads(int n)
{
#ifdef _OPENMP
    return n > 0 ? n : omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
}

static int pv_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int pv_version(void) { return 12; }

/* The lowest buffer index marked free in `is_free[0, *used)`, taken; else a new one. */
static int32_t pv_take_lowest(unsigned char *is_free, int32_t *used)
{
    for (int32_t i = 0; i < *used; i++)
        if (is_free[i]) {
            is_free[i] = 0;
            return i;
        }
    is_free[*used] = 0;
    return (*used)++;
}

/* The node program of a batch of unrooted topologies: pv_plan's arrays, from each
 * topology's children (`children` [B, m, 3], row j the children of node n_taxa + j in the
 * trees module's numbering: post-order, the root last, with three children; -1 pads).
 *
 * Per topology, the m internal nodes are laid out from offsets[b] = b * m in depth-first
 * post-order, the larger subtree first, so that a pass needs about log2(m) live buffers
 * (Sethi and Ullman's order for registers); a node of two children lists a tip child
 * first. ref: -(taxon + 1) for a tip child, else the child's index in the program; edge:
 * b * n_edges + the child's node number (edge i is above node i). slot: each node's
 * partials buffer for passes without a gradient, the lowest free one, freed once its
 * parent has read it (the parent takes its own first: it reads its children's meanwhile).
 * up_slot: each non-root node's pre-order buffer, taken in its parent's step of the
 * reversed pass and freed once the node has made its children's; -1 at roots.
 * Returns 0, or 1 when out of memory. */
int pv_build_plan(int n_topologies, int n_taxa, int m, int n_edges, const int32_t *children,
                  int32_t *offsets, int32_t *nch, int32_t *ref, int32_t *edge, int32_t *slot,
                  int32_t *up_slot)
{
    int32_t *kid = malloc(sizeof(int32_t) * 3 * (size_t)m);
    int32_t *size = malloc(sizeof(int32_t) * (size_t)m);
    int32_t *order = malloc(sizeof(int32_t) * (size_t)m);
    int32_t *position = malloc(sizeof(int32_t) * (size_t)m);
    int32_t *stack = malloc(sizeof(int32_t) * 2 * (size_t)m); /* node * 2 + expanded */
    unsigned char *is_free = malloc((size_t)m + 1);
    int failed = !kid || !size || !order || !position || !stack || !is_free;
    for (int b = 0; b < n_topologies && !failed; b++) {
        const int32_t *ch = children + (long)b * m * 3;
        const int base = b * m;
        offsets[b] = base;
        for (int j = 0; j < m; j++) {
            int32_t *k = kid + 3 * j;
            k[0] = ch[3 * j], k[1] = ch[3 * j + 1], k[2] = ch[3 * j + 2];
            if (j < m - 1 && k[0] >= n_taxa && k[1] < n_taxa) { /* a tip child first */
                const int32_t t = k[0];
                k[0] = k[1], k[1] = t;
            }
            size[j] = 1;
            for (int c = 0; c < (j == m - 1 ? 3 : 2); c++)
                if (k[c] >= n_taxa) size[j] += size[k[c] - n_taxa]; /* children come first */
        }
        int top = 0, next = 0;
        stack[top++] = 2 * (m - 1);
        while (top) {
            const int32_t item = stack[--top], node = item / 2;
            if (item & 1) {
                order[next++] = node;
                continue;
            }
            stack[top++] = item + 1;
            int32_t inner[3];
            int n_inner = 0;
            for (int c = 0; c < (node == m - 1 ? 3 : 2); c++) { /* by size, stable */
                const int32_t k = kid[3 * node + c];
                if (k < n_taxa) continue;
                int at = n_inner++;
                while (at > 0 && size[inner[at - 1]] > size[k - n_taxa]) {
                    inner[at] = inner[at - 1];
                    at--;
                }
                inner[at] = k - n_taxa;
            }
            /* the largest is popped first */
            for (int c = 0; c < n_inner; c++) stack[top++] = 2 * inner[c];
        }
        for (int i = 0; i < m; i++) position[order[i]] = i;
        for (int i = 0; i < m; i++) {
            const int node = order[i], g = base + i, count = node == m - 1 ? 3 : 2;
            nch[g] = count;
            for (int c = 0; c < 3; c++) {
                const int32_t k = c < count ? kid[3 * node + c] : 0;
                ref[3 * g + c] = c >= count   ? 0
                                 : k < n_taxa ? -(k + 1)
                                              : base + position[k - n_taxa];
                edge[3 * g + c] = c < count ? b * n_edges + k : 0;
            }
        }
        int32_t used = 0;
        memset(is_free, 0, (size_t)m + 1);
        for (int g = base; g < base + m; g++) {
            slot[g] = pv_take_lowest(is_free, &used);
            for (int c = 0; c < nch[g]; c++)
                if (ref[3 * g + c] >= 0) is_free[slot[ref[3 * g + c]]] = 1;
        }
        used = 0;
        memset(is_free, 0, (size_t)m + 1);
        up_slot[base + m - 1] = -1;
        for (int g = base + m - 1; g >= base; g--) {
            for (int c = 0; c < nch[g]; c++)
                if (ref[3 * g + c] >= 0) up_slot[ref[3 * g + c]] = pv_take_lowest(is_free, &used);
            if (up_slot[g] >= 0) is_free[up_slot[g]] = 1;
        }
    }
    offsets[n_topologies] = n_topologies * m;
    free(kid), free(size), free(order), free(position), free(stack), free(is_free);
    return failed;
}

#if PV_FOUR_ROWS
#include <immintrin.h>

/* The gradient sweeps keep 16 vector accumulators. Summing each one's lanes on its
 * own goes through the stack and, on blocks of 64-128 patterns, costs as much as the
 * sweep itself; these sum all of them at once with pairwise adds and a transpose of
 * 128-bit chunks, leaving lane j = the sum of vector j's lanes. */
static inline __m512d pv_chunk_sums_pd(__m512d b0, __m512d b1, __m512d b2, __m512d b3)
{
    /* b_k's chunk L holds part of chunk k of the result; sum over L */
    const __m512d g01 = _mm512_add_pd(_mm512_shuffle_f64x2(b0, b1, 0x44), _mm512_shuffle_f64x2(b0, b1, 0xEE));
    const __m512d g23 = _mm512_add_pd(_mm512_shuffle_f64x2(b2, b3, 0x44), _mm512_shuffle_f64x2(b2, b3, 0xEE));
    return _mm512_add_pd(_mm512_shuffle_f64x2(g01, g23, 0x88), _mm512_shuffle_f64x2(g01, g23, 0xDD));
}

static inline __m512 pv_chunk_sums_ps(__m512 b0, __m512 b1, __m512 b2, __m512 b3)
{
    const __m512 g01 = _mm512_add_ps(_mm512_shuffle_f32x4(b0, b1, 0x44), _mm512_shuffle_f32x4(b0, b1, 0xEE));
    const __m512 g23 = _mm512_add_ps(_mm512_shuffle_f32x4(b2, b3, 0x44), _mm512_shuffle_f32x4(b2, b3, 0xEE));
    return _mm512_add_ps(_mm512_shuffle_f32x4(g01, g23, 0x88), _mm512_shuffle_f32x4(g01, g23, 0xDD));
}

/* lane j of the result = sum of a[j]'s 8 lanes */
static inline __m512d pv_lane_sums8_pd(const __m512d *a)
{
    __m512d b[4];
    for (int k = 0; k < 4; k++) /* chunk L: the chunk-L sums of a[2k] and a[2k + 1] */
        b[k] = _mm512_add_pd(_mm512_unpacklo_pd(a[2 * k], a[2 * k + 1]),
                             _mm512_unpackhi_pd(a[2 * k], a[2 * k + 1]));
    return pv_chunk_sums_pd(b[0], b[1], b[2], b[3]);
}

/* lane j of the result = sum of a[j]'s 16 lanes */
static inline __m512 pv_lane_sums16_ps(const __m512 *a)
{
    __m512 b[8], e[4];
    for (int k = 0; k < 8; k++) /* chunk L: the chunk-L pair sums of a[2k], a[2k + 1], interleaved */
        b[k] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * k], a[2 * k + 1]),
                             _mm512_unpackhi_ps(a[2 * k], a[2 * k + 1]));
    for (int k = 0; k < 4; k++) /* chunk L: the chunk-L sums of a[4k .. 4k + 3] */
        e[k] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * k], b[2 * k + 1], 0x44),
                             _mm512_shuffle_ps(b[2 * k], b[2 * k + 1], 0xEE));
    return pv_chunk_sums_ps(e[0], e[1], e[2], e[3]);
}

/* G[i][j] += sum_p m_i[p] x_j[p] with m_i = A_i S_i (S = NULL: S = 1) for all four rows in
 * one sweep and, when up is given, up_j = sum_i m_i Mt[j][i] (planes of stride ls) from the
 * same m; x_j is x_j * x2_j * sx (one plane) when they are given, which rebuilds a node's
 * partials from its contributions and scale. n is a multiple of 8 (the pattern padding).
 * The accumulators are named variables: gcc keeps an array of them on the stack. */
#define PV_GRAD_FOUR(V, LOAD, MUL, FMA, ZERO, STEP, MASK, STORE, SET1)                       \
    V g00 = ZERO, g01 = ZERO, g02 = ZERO, g03 = ZERO, g10 = ZERO, g11 = ZERO, g12 = ZERO,    \
      g13 = ZERO, g20 = ZERO, g21 = ZERO, g22 = ZERO, g23 = ZERO, g30 = ZERO, g31 = ZERO,    \
      g32 = ZERO, g33 = ZERO;                                                                \
    for (int p = 0; p < n; p += STEP) {                                                      \
        MASK;                                                                                \
        V a = LOAD(A + p), b = LOAD(A + la + p), c = LOAD(A + 2 * la + p),                   \
          d = LOAD(A + 3 * la + p);                                                          \
        if (S) {                                                                             \
            a = MUL(a, LOAD(S + p)); b = MUL(b, LOAD(S + ls + p));                           \
            c = MUL(c, LOAD(S + 2 * ls + p)); d = MUL(d, LOAD(S + 3 * ls + p));              \
        }                                                                                    \
        if (up)                                                                              \
            for (int j = 0; j < 4; j++)                                                      \
                STORE(up + j * ls + p, FMA(SET1(Mt[4 * j + 3]), d, FMA(SET1(Mt[4 * j + 2]), c, \
                      FMA(SET1(Mt[4 * j + 1]), b, MUL(SET1(Mt[4 * j]), a)))));              \
        V u = LOAD(x + p), v = LOAD(x + lx + p), w = LOAD(x + 2 * lx + p),                   \
          z = LOAD(x + 3 * lx + p);                                                          \
        if (x2) {                                                                            \
            u = MUL(u, LOAD(x2 + p)); v = MUL(v, LOAD(x2 + lx + p));                         \
            w = MUL(w, LOAD(x2 + 2 * lx + p)); z = MUL(z, LOAD(x2 + 3 * lx + p));            \
        }                                                                                    \
        if (sx) {                                                                            \
            const V t = LOAD(sx + p);                                                        \
            u = MUL(u, t); v = MUL(v, t); w = MUL(w, t); z = MUL(z, t);                      \
        }                                                                                    \
        g00 = FMA(a, u, g00); g01 = FMA(a, v, g01); g02 = FMA(a, w, g02); g03 = FMA(a, z, g03); \
        g10 = FMA(b, u, g10); g11 = FMA(b, v, g11); g12 = FMA(b, w, g12); g13 = FMA(b, z, g13); \
        g20 = FMA(c, u, g20); g21 = FMA(c, v, g21); g22 = FMA(c, w, g22); g23 = FMA(c, z, g23); \
        g30 = FMA(d, u, g30); g31 = FMA(d, v, g31); g32 = FMA(d, w, g32); g33 = FMA(d, z, g33); \
    }

static inline void grad_four_f64(int n, const double *PV_RESTRICT A, long la,
                                 const double *PV_RESTRICT S, long ls,
                                 const double *PV_RESTRICT x, long lx,
                                 const double *PV_RESTRICT x2, const double *PV_RESTRICT sx,
                                 double *G, const double *Mt, double *PV_RESTRICT up)
{
    PV_GRAD_FOUR(__m512d, _mm512_loadu_pd, _mm512_mul_pd, _mm512_fmadd_pd, _mm512_setzero_pd(), 8, (void)0,
                 _mm512_storeu_pd, _mm512_set1_pd)
    const __m512d r0[8] = {g00, g01, g02, g03, g10, g11, g12, g13};
    const __m512d r1[8] = {g20, g21, g22, g23, g30, g31, g32, g33};
    _mm512_storeu_pd(G, _mm512_add_pd(_mm512_loadu_pd(G), pv_lane_sums8_pd(r0)));
    _mm512_storeu_pd(G + 8, _mm512_add_pd(_mm512_loadu_pd(G + 8), pv_lane_sums8_pd(r1)));
}

static inline void grad_four_f32(int n, const float *PV_RESTRICT A, long la,
                                 const float *PV_RESTRICT S, long ls,
                                 const float *PV_RESTRICT x, long lx,
                                 const float *PV_RESTRICT x2, const float *PV_RESTRICT sx,
                                 double *G, const float *Mt, float *PV_RESTRICT up)
{
#define PV_LOAD_MASKED(ptr) _mm512_maskz_loadu_ps(m, ptr)
#define PV_STORE_MASKED(ptr, value) _mm512_mask_storeu_ps(ptr, m, value)
    PV_GRAD_FOUR(__m512, PV_LOAD_MASKED, _mm512_mul_ps, _mm512_fmadd_ps, _mm512_setzero_ps(), 16,
                 const __mmask16 m = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1),
                 PV_STORE_MASKED, _mm512_set1_ps)
#undef PV_LOAD_MASKED
#undef PV_STORE_MASKED
    const __m512 r[16] = {g00, g01, g02, g03, g10, g11, g12, g13, g20, g21, g22, g23, g30, g31, g32, g33};
    const __m512 sums = pv_lane_sums16_ps(r);
    _mm512_storeu_pd(G, _mm512_add_pd(_mm512_loadu_pd(G), _mm512_cvtps_pd(_mm512_castps512_ps256(sums))));
    _mm512_storeu_pd(G + 8, _mm512_add_pd(_mm512_loadu_pd(G + 8),
                                          _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sums), 1)))));
}
#undef PV_GRAD_FOUR

/* The branch-length gradient of an internal child's edge for a reversible model with a
 * fixed Q, in float32, with the upper partials kept divided by pi ("z-form", see
 * pv_loglik): z_i = A_i S_i is the message over pi, and with Sym = diag(pi) Q
 * (symmetric, zero row sums)
 *   m^T Q y = z^T Sym y = -sum_{i<j} Sym_ij (z_i - z_j)(y_i - y_j),
 * 6 multiply-adds and 12 subtractions per pattern instead of 16 multiply-adds (the
 * subtractions go to the add pipes where a core has them beside its FMA pipes). Returns
 * sum_p sum_{i<j} w_k (z_i - z_j)(y_i - y_j) for w = -Sym's upper triangle (pairs 01,
 * 02, 03, 12, 13, 23), y = x. When up is given, the child's upper over pi is
 * up_j = sum_i P_ji z_i = (P z)_j (for a reversible P, pi_i P_ij / pi_j = P_ji): M as it
 * is, not transposed. In float64 the same sweep gained nothing (0.97-1.05x the
 * gradient's time on a 2-core AMD EPYC, 2026-12-07: docs/performance.md), so float64
 * keeps grad_four. */
#define PV_GRAD_FOUR_Z(V, LOAD, MUL, FMA, SUB, ZERO, STEP, MASK, STORE, SET1)                  \
    V h01 = ZERO, h02 = ZERO, h03 = ZERO, h12 = ZERO, h13 = ZERO, h23 = ZERO;               \
    for (int p = 0; p < n; p += STEP) {                                                      \
        MASK;                                                                                \
        const V a = MUL(LOAD(A + p), LOAD(S + p)), b = MUL(LOAD(A + ls + p), LOAD(S + ls + p)), \
          c = MUL(LOAD(A + 2 * ls + p), LOAD(S + 2 * ls + p)),                               \
          d = MUL(LOAD(A + 3 * ls + p), LOAD(S + 3 * ls + p));                               \
        if (up)                                                                              \
            for (int j = 0; j < 4; j++)                                                      \
                STORE(up + j * ls + p, FMA(SET1(M[4 * j + 3]), d, FMA(SET1(M[4 * j + 2]), c,  \
                      FMA(SET1(M[4 * j + 1]), b, MUL(SET1(M[4 * j]), a)))));                \
        const V u = LOAD(x + p), v = LOAD(x + ls + p), w = LOAD(x + 2 * ls + p),             \
          z = LOAD(x + 3 * ls + p);                                                          \
        h01 = FMA(SUB(a, b), SUB(u, v), h01); h02 = FMA(SUB(a, c), SUB(u, w), h02);          \
        h03 = FMA(SUB(a, d), SUB(u, z), h03); h12 = FMA(SUB(b, c), SUB(v, w), h12);          \
        h13 = FMA(SUB(b, d), SUB(v, z), h13); h23 = FMA(SUB(c, d), SUB(w, z), h23);          \
    }

static inline double grad_four_z_f32(int n, const float *PV_RESTRICT A, const float *PV_RESTRICT S,
                                     long ls, const float *PV_RESTRICT x, const float *M,
                                     float *PV_RESTRICT up, const double *wz)
{
#define PV_LOAD_MASKED(ptr) _mm512_maskz_loadu_ps(m, ptr)
#define PV_STORE_MASKED(ptr, value) _mm512_mask_storeu_ps(ptr, m, value)
    PV_GRAD_FOUR_Z(__m512, PV_LOAD_MASKED, _mm512_mul_ps, _mm512_fmadd_ps, _mm512_sub_ps,
                   _mm512_setzero_ps(), 16,
                   const __mmask16 m = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1),
                   PV_STORE_MASKED, _mm512_set1_ps)
#undef PV_LOAD_MASKED
#undef PV_STORE_MASKED
    const __m512 zero = _mm512_setzero_ps();
    const __m512 r[16] = {h01, h02, h03, h12, h13, h23, zero, zero,
                          zero, zero, zero, zero, zero, zero, zero, zero};
    const __m512d sums = _mm512_cvtps_pd(_mm512_castps512_ps256(pv_lane_sums16_ps(r)));
    return _mm512_reduce_add_pd(_mm512_mul_pd(sums, _mm512_loadu_pd(wz)));
}
#undef PV_GRAD_FOUR_Z

/* Tips given by their codes (4-bit state masks, bit j: state j). A tip's contribution
 * M @ x takes one of 16 values per row i, (M @ the code's 0/1 vector)_i =
 * sum_j M[i][j] bit_j(code): the tables below build them in registers, and a permute per
 * row and 8 (float64) or 16 (float32) patterns replaces the 16 multiply-adds of M @ x
 * and the reads of the tip's 4 planes. The codes are read 8 or 16 at a time; the caller
 * pads them (see tip_code_rows in cpu_kernel.py). */
static const float pv_code_bits[4][16] = {
    {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1},
    {0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1},
    {0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1},
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}};

static inline void pv_tables_pd(const double *M, __m512d *lo, __m512d *hi)
{
    for (int i = 0; i < 4; i++) { /* codes 0-7 in lo, 8-15 (bit 3 set) in hi */
        __m512d t = _mm512_mul_pd(_mm512_set1_pd(M[4 * i]), _mm512_cvtps_pd(_mm256_loadu_ps(pv_code_bits[0])));
        t = _mm512_fmadd_pd(_mm512_set1_pd(M[4 * i + 1]), _mm512_cvtps_pd(_mm256_loadu_ps(pv_code_bits[1])), t);
        lo[i] = _mm512_fmadd_pd(_mm512_set1_pd(M[4 * i + 2]), _mm512_cvtps_pd(_mm256_loadu_ps(pv_code_bits[2])), t);
        hi[i] = _mm512_add_pd(lo[i], _mm512_set1_pd(M[4 * i + 3]));
    }
}

static inline void pv_tables_ps(const float *M, __m512 *t)
{
    for (int i = 0; i < 4; i++) {
        __m512 v = _mm512_mul_ps(_mm512_set1_ps(M[4 * i]), _mm512_loadu_ps(pv_code_bits[0]));
        for (int j = 1; j < 4; j++)
            v = _mm512_fmadd_ps(_mm512_set1_ps(M[4 * i + j]), _mm512_loadu_ps(pv_code_bits[j]), v);
        t[i] = v;
    }
}

/* o = (Mt @ tip) * (M1 @ y) in one sweep, the tip given by its codes cd and the other
 * child either by its codes cd1 or by its planes y (an F81-family M1 when f81);
 * Lt = Mt @ tip and Ry = M1 @ y kept when given. */
static inline void pv_tip_node_pd(int n, const double *Mt, const uint8_t *PV_RESTRICT cd,
                                  const double *M1, const double *PV_RESTRICT y, long ly,
                                  const uint8_t *PV_RESTRICT cd1, int f81, double *PV_RESTRICT Lt,
                                  double *PV_RESTRICT Ry, double *PV_RESTRICT o, long ld)
{
    __m512d lo[4], hi[4], lo1[4], hi1[4];
    pv_tables_pd(Mt, lo, hi);
    if (cd1) pv_tables_pd(M1, lo1, hi1);
    const double e1 = M1[0] - M1[4];
    for (int p = 0; p < n; p += 8) {
        const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cd + p)));
        __m512d r[4];
        if (cd1) {
            const __m512i idx1 = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cd1 + p)));
            for (int i = 0; i < 4; i++) r[i] = _mm512_permutex2var_pd(lo1[i], idx1, hi1[i]);
        } else {
            const __m512d y0 = _mm512_loadu_pd(y + p), y1 = _mm512_loadu_pd(y + ly + p),
                          y2 = _mm512_loadu_pd(y + 2 * ly + p), y3 = _mm512_loadu_pd(y + 3 * ly + p);
            if (f81) { /* M1 = e1 I + 1 w^T, w = (M1[4], M1[1], M1[2], M1[3]) */
                __m512d sum = _mm512_mul_pd(_mm512_set1_pd(M1[4]), y0);
                sum = _mm512_fmadd_pd(_mm512_set1_pd(M1[1]), y1, sum);
                sum = _mm512_fmadd_pd(_mm512_set1_pd(M1[2]), y2, sum);
                sum = _mm512_fmadd_pd(_mm512_set1_pd(M1[3]), y3, sum);
                const __m512d e = _mm512_set1_pd(e1);
                r[0] = _mm512_fmadd_pd(e, y0, sum); r[1] = _mm512_fmadd_pd(e, y1, sum);
                r[2] = _mm512_fmadd_pd(e, y2, sum); r[3] = _mm512_fmadd_pd(e, y3, sum);
            } else {
                for (int i = 0; i < 4; i++) {
                    __m512d v = _mm512_mul_pd(_mm512_set1_pd(M1[4 * i]), y0);
                    v = _mm512_fmadd_pd(_mm512_set1_pd(M1[4 * i + 1]), y1, v);
                    v = _mm512_fmadd_pd(_mm512_set1_pd(M1[4 * i + 2]), y2, v);
                    r[i] = _mm512_fmadd_pd(_mm512_set1_pd(M1[4 * i + 3]), y3, v);
                }
            }
        }
        for (int i = 0; i < 4; i++) {
            const __m512d v = _mm512_permutex2var_pd(lo[i], idx, hi[i]);
            if (Lt) _mm512_storeu_pd(Lt + i * ld + p, v);
            if (Ry) _mm512_storeu_pd(Ry + i * ld + p, r[i]);
            _mm512_storeu_pd(o + i * ld + p, _mm512_mul_pd(v, r[i]));
        }
    }
}

static inline void pv_tip_node_ps(int n, const float *Mt, const uint8_t *PV_RESTRICT cd,
                                  const float *M1, const float *PV_RESTRICT y, long ly,
                                  const uint8_t *PV_RESTRICT cd1, int f81, float *PV_RESTRICT Lt,
                                  float *PV_RESTRICT Ry, float *PV_RESTRICT o, long ld)
{
    __m512 t[4], t1[4];
    pv_tables_ps(Mt, t);
    if (cd1) pv_tables_ps(M1, t1);
    const float e1 = M1[0] - M1[4];
    for (int p = 0; p < n; p += 16) {
        const __mmask16 m = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cd + p)));
        __m512 r[4];
        if (cd1) {
            const __m512i idx1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cd1 + p)));
            for (int i = 0; i < 4; i++) r[i] = _mm512_permutexvar_ps(idx1, t1[i]);
        } else {
            const __m512 y0 = _mm512_maskz_loadu_ps(m, y + p), y1 = _mm512_maskz_loadu_ps(m, y + ly + p),
                         y2 = _mm512_maskz_loadu_ps(m, y + 2 * ly + p),
                         y3 = _mm512_maskz_loadu_ps(m, y + 3 * ly + p);
            if (f81) {
                __m512 sum = _mm512_mul_ps(_mm512_set1_ps(M1[4]), y0);
                sum = _mm512_fmadd_ps(_mm512_set1_ps(M1[1]), y1, sum);
                sum = _mm512_fmadd_ps(_mm512_set1_ps(M1[2]), y2, sum);
                sum = _mm512_fmadd_ps(_mm512_set1_ps(M1[3]), y3, sum);
                const __m512 e = _mm512_set1_ps(e1);
                r[0] = _mm512_fmadd_ps(e, y0, sum); r[1] = _mm512_fmadd_ps(e, y1, sum);
                r[2] = _mm512_fmadd_ps(e, y2, sum); r[3] = _mm512_fmadd_ps(e, y3, sum);
            } else {
                for (int i = 0; i < 4; i++) {
                    __m512 v = _mm512_mul_ps(_mm512_set1_ps(M1[4 * i]), y0);
                    v = _mm512_fmadd_ps(_mm512_set1_ps(M1[4 * i + 1]), y1, v);
                    v = _mm512_fmadd_ps(_mm512_set1_ps(M1[4 * i + 2]), y2, v);
                    r[i] = _mm512_fmadd_ps(_mm512_set1_ps(M1[4 * i + 3]), y3, v);
                }
            }
        }
        for (int i = 0; i < 4; i++) {
            const __m512 v = _mm512_permutexvar_ps(idx, t[i]);
            if (Lt) _mm512_mask_storeu_ps(Lt + i * ld + p, m, v);
            if (Ry) _mm512_mask_storeu_ps(Ry + i * ld + p, m, r[i]);
            _mm512_mask_storeu_ps(o + i * ld + p, m, _mm512_mul_ps(v, r[i]));
        }
    }
}

/* The sums of f81_backward_pair (g, then h_0..h_3 in out) when the sibling (cdy) or the
 * child (cdx) is a tip given by its codes: the sibling's contribution is looked up, and
 * the child's 0/1 planes become masks, so that no tip plane is read. A tip child has no
 * upper partials; up is written only for an internal child. */
static inline void pv_f81_pair_pd(int n, const double *PV_RESTRICT A, long la, const double *Ms,
                                  const double *PV_RESTRICT y, long ly, const uint8_t *PV_RESTRICT cdy,
                                  const double *Mk, const double *PV_RESTRICT x, long lx,
                                  const uint8_t *PV_RESTRICT cdx, double *PV_RESTRICT up,
                                  long lu, double *out)
{
    __m512d lo[4], hi[4];
    if (cdy) pv_tables_pd(Ms, lo, hi);
    const __m512d es = _mm512_set1_pd(Ms[0] - Ms[4]), ek = _mm512_set1_pd(Mk[0] - Mk[4]);
    const __m512d sw[4] = {_mm512_set1_pd(Ms[4]), _mm512_set1_pd(Ms[1]), _mm512_set1_pd(Ms[2]), _mm512_set1_pd(Ms[3])};
    const __m512d kw[4] = {_mm512_set1_pd(Mk[4]), _mm512_set1_pd(Mk[1]), _mm512_set1_pd(Mk[2]), _mm512_set1_pd(Mk[3])};
    __m512d g = _mm512_setzero_pd(), h[4] = {g, g, g, g};
    for (int p = 0; p < n; p += 8) {
        __m512d a[4];
        if (cdy) {
            const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cdy + p)));
            for (int i = 0; i < 4; i++)
                a[i] = _mm512_mul_pd(_mm512_loadu_pd(A + i * la + p), _mm512_permutex2var_pd(lo[i], idx, hi[i]));
        } else {
            __m512d yv[4], sy = _mm512_setzero_pd();
            for (int i = 0; i < 4; i++) {
                yv[i] = _mm512_loadu_pd(y + i * ly + p);
                sy = _mm512_fmadd_pd(sw[i], yv[i], sy);
            }
            for (int i = 0; i < 4; i++)
                a[i] = _mm512_mul_pd(_mm512_loadu_pd(A + i * la + p), _mm512_fmadd_pd(es, yv[i], sy));
        }
        const __m512d sum = _mm512_add_pd(_mm512_add_pd(a[0], a[1]), _mm512_add_pd(a[2], a[3]));
        if (cdx) {
            const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cdx + p)));
            for (int i = 0; i < 4; i++) {
                const __mmask8 has = _mm512_test_epi64_mask(idx, _mm512_set1_epi64(1 << i));
                g = _mm512_mask_add_pd(g, has, g, a[i]);
                h[i] = _mm512_mask_add_pd(h[i], has, h[i], sum);
            }
        } else {
            for (int i = 0; i < 4; i++) {
                const __m512d xv = _mm512_loadu_pd(x + i * lx + p);
                g = _mm512_fmadd_pd(a[i], xv, g);
                h[i] = _mm512_fmadd_pd(sum, xv, h[i]);
                if (up) _mm512_storeu_pd(up + i * lu + p, _mm512_fmadd_pd(ek, a[i], _mm512_mul_pd(kw[i], sum)));
            }
        }
    }
    out[0] = _mm512_reduce_add_pd(g);
    for (int i = 0; i < 4; i++) out[1 + i] = _mm512_reduce_add_pd(h[i]);
}

static inline void pv_f81_pair_ps(int n, const float *PV_RESTRICT A, long la, const float *Ms,
                                  const float *PV_RESTRICT y, long ly, const uint8_t *PV_RESTRICT cdy,
                                  const float *Mk, const float *PV_RESTRICT x, long lx,
                                  const uint8_t *PV_RESTRICT cdx, float *PV_RESTRICT up,
                                  long lu, double *out)
{
    __m512 t[4];
    if (cdy) pv_tables_ps(Ms, t);
    const __m512 es = _mm512_set1_ps(Ms[0] - Ms[4]), ek = _mm512_set1_ps(Mk[0] - Mk[4]);
    const __m512 sw[4] = {_mm512_set1_ps(Ms[4]), _mm512_set1_ps(Ms[1]), _mm512_set1_ps(Ms[2]), _mm512_set1_ps(Ms[3])};
    const __m512 kw[4] = {_mm512_set1_ps(Mk[4]), _mm512_set1_ps(Mk[1]), _mm512_set1_ps(Mk[2]), _mm512_set1_ps(Mk[3])};
    __m512 g = _mm512_setzero_ps(), h[4] = {g, g, g, g};
    for (int p = 0; p < n; p += 16) {
        const __mmask16 m = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        __m512 a[4];
        if (cdy) {
            const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cdy + p)));
            for (int i = 0; i < 4; i++)
                a[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, A + i * la + p), _mm512_permutexvar_ps(idx, t[i]));
        } else {
            __m512 yv[4], sy = _mm512_setzero_ps();
            for (int i = 0; i < 4; i++) {
                yv[i] = _mm512_maskz_loadu_ps(m, y + i * ly + p);
                sy = _mm512_fmadd_ps(sw[i], yv[i], sy);
            }
            for (int i = 0; i < 4; i++)
                a[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, A + i * la + p), _mm512_fmadd_ps(es, yv[i], sy));
        }
        const __m512 sum = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
        if (cdx) {
            const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cdx + p)));
            for (int i = 0; i < 4; i++) {
                const __mmask16 has = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(1 << i)) & m;
                g = _mm512_mask_add_ps(g, has, g, a[i]);
                h[i] = _mm512_mask_add_ps(h[i], has, h[i], sum);
            }
        } else {
            for (int i = 0; i < 4; i++) {
                const __m512 xv = _mm512_maskz_loadu_ps(m, x + i * lx + p);
                g = _mm512_fmadd_ps(a[i], xv, g);
                h[i] = _mm512_fmadd_ps(sum, xv, h[i]);
                if (up) _mm512_mask_storeu_ps(up + i * lu + p, m, _mm512_fmadd_ps(ek, a[i], _mm512_mul_ps(kw[i], sum)));
            }
        }
    }
    out[0] = _mm512_reduce_add_ps(g);
    for (int i = 0; i < 4; i++) out[1 + i] = _mm512_reduce_add_ps(h[i]);
}

/* The pre-order step to both children of an F81-family node of two children, when only
 * the branch lengths' derivative is wanted (see f81_dir_pair): out[k] += sum_p
 * (sum_i m_k,i) (v . x_k), m_0 = A * (M1 @ x1) and m_1 = A * (M0 @ x0), and, for an
 * internal child k, up_k = m_k @ M_k. A tip child is given by its codes (cd0, cd1):
 * its contribution and v . x_k are then looked up, and no tip plane is read. */
static inline void pv_f81_dir_pair_pd(int n, const double *PV_RESTRICT A, long la,
                                      const double *M0, const double *PV_RESTRICT x0, long l0,
                                      const uint8_t *PV_RESTRICT cd0, const double *M1,
                                      const double *PV_RESTRICT x1, long l1,
                                      const uint8_t *PV_RESTRICT cd1, const double *v,
                                      double *PV_RESTRICT up0, double *PV_RESTRICT up1, double *out)
{
    const double *M[2] = {M0, M1}, *x[2] = {x0, x1};
    const long lx[2] = {l0, l1};
    const uint8_t *cd[2] = {cd0, cd1};
    double *up[2] = {up0, up1};
    const double V[16] = {v[0], v[1], v[2], v[3]}; /* row 0: v . code */
    const double mu = v[0] + v[1] + v[2] + v[3];
    __m512d lo[2][4], hi[2][4], vlo[4], vhi[4], e[2], kappa[2], w[2][4], b[2];
    const __m512d vv[4] = {_mm512_set1_pd(v[0]), _mm512_set1_pd(v[1]), _mm512_set1_pd(v[2]), _mm512_set1_pd(v[3])};
    if (cd0 || cd1) pv_tables_pd(V, vlo, vhi);
    for (int k = 0; k < 2; k++) {
        if (cd[k]) pv_tables_pd(M[k], lo[k], hi[k]);
        const double *Mk = M[k];
        e[k] = _mm512_set1_pd(Mk[0] - Mk[4]);
        /* w = (1 - e) pi = kappa v, so w . x = kappa (v . x) */
        kappa[k] = _mm512_set1_pd((Mk[4] + Mk[1] + Mk[2] + Mk[3]) / mu);
        w[k][0] = _mm512_set1_pd(Mk[4]), w[k][1] = _mm512_set1_pd(Mk[1]);
        w[k][2] = _mm512_set1_pd(Mk[2]), w[k][3] = _mm512_set1_pd(Mk[3]);
        b[k] = _mm512_setzero_pd();
    }
    for (int p = 0; p < n; p += 8) {
        __m512d c[2][4], px[2];
        for (int k = 0; k < 2; k++) {
            if (cd[k]) {
                const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cd[k] + p)));
                for (int i = 0; i < 4; i++) c[k][i] = _mm512_permutex2var_pd(lo[k][i], idx, hi[k][i]);
                px[k] = _mm512_permutex2var_pd(vlo[0], idx, vhi[0]);
            } else {
                __m512d xv[4];
                for (int i = 0; i < 4; i++) xv[i] = _mm512_loadu_pd(x[k] + i * lx[k] + p);
                px[k] = _mm512_fmadd_pd(vv[3], xv[3], _mm512_fmadd_pd(vv[2], xv[2],
                        _mm512_fmadd_pd(vv[1], xv[1], _mm512_mul_pd(vv[0], xv[0]))));
                const __m512d s = _mm512_mul_pd(kappa[k], px[k]);
                for (int i = 0; i < 4; i++) c[k][i] = _mm512_fmadd_pd(e[k], xv[i], s);
            }
        }
        __m512d m[2][4];
        for (int i = 0; i < 4; i++) {
            const __m512d a = _mm512_loadu_pd(A + i * la + p);
            m[0][i] = _mm512_mul_pd(a, c[1][i]);
            m[1][i] = _mm512_mul_pd(a, c[0][i]);
        }
        for (int k = 0; k < 2; k++) {
            const __m512d sum = _mm512_add_pd(_mm512_add_pd(m[k][0], m[k][1]), _mm512_add_pd(m[k][2], m[k][3]));
            b[k] = _mm512_fmadd_pd(sum, px[k], b[k]);
            if (up[k])
                for (int i = 0; i < 4; i++)
                    _mm512_storeu_pd(up[k] + i * la + p, _mm512_fmadd_pd(e[k], m[k][i], _mm512_mul_pd(w[k][i], sum)));
        }
    }
    out[0] += _mm512_reduce_add_pd(b[0]);
    out[1] += _mm512_reduce_add_pd(b[1]);
}

static inline void pv_f81_dir_pair_ps(int n, const float *PV_RESTRICT A, long la,
                                      const float *M0, const float *PV_RESTRICT x0, long l0,
                                      const uint8_t *PV_RESTRICT cd0, const float *M1,
                                      const float *PV_RESTRICT x1, long l1,
                                      const uint8_t *PV_RESTRICT cd1, const float *v,
                                      float *PV_RESTRICT up0, float *PV_RESTRICT up1, double *out)
{
    const float *M[2] = {M0, M1}, *x[2] = {x0, x1};
    const long lx[2] = {l0, l1};
    const uint8_t *cd[2] = {cd0, cd1};
    float *up[2] = {up0, up1};
    const float V[16] = {v[0], v[1], v[2], v[3]};
    const float mu = v[0] + v[1] + v[2] + v[3];
    __m512 t[2][4], vt[4], e[2], kappa[2], w[2][4], b[2];
    const __m512 vv[4] = {_mm512_set1_ps(v[0]), _mm512_set1_ps(v[1]), _mm512_set1_ps(v[2]), _mm512_set1_ps(v[3])};
    if (cd0 || cd1) pv_tables_ps(V, vt);
    for (int k = 0; k < 2; k++) {
        if (cd[k]) pv_tables_ps(M[k], t[k]);
        const float *Mk = M[k];
        e[k] = _mm512_set1_ps(Mk[0] - Mk[4]);
        kappa[k] = _mm512_set1_ps((Mk[4] + Mk[1] + Mk[2] + Mk[3]) / mu);
        w[k][0] = _mm512_set1_ps(Mk[4]), w[k][1] = _mm512_set1_ps(Mk[1]);
        w[k][2] = _mm512_set1_ps(Mk[2]), w[k][3] = _mm512_set1_ps(Mk[3]);
        b[k] = _mm512_setzero_ps();
    }
    for (int p = 0; p < n; p += 16) {
        const __mmask16 msk = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        __m512 c[2][4], px[2];
        for (int k = 0; k < 2; k++) {
            if (cd[k]) { /* padded codes are 0: a zero contribution, masked out below anyway */
                const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cd[k] + p)));
                for (int i = 0; i < 4; i++) c[k][i] = _mm512_permutexvar_ps(idx, t[k][i]);
                px[k] = _mm512_permutexvar_ps(idx, vt[0]);
            } else {
                __m512 xv[4];
                for (int i = 0; i < 4; i++) xv[i] = _mm512_maskz_loadu_ps(msk, x[k] + i * lx[k] + p);
                px[k] = _mm512_fmadd_ps(vv[3], xv[3], _mm512_fmadd_ps(vv[2], xv[2],
                        _mm512_fmadd_ps(vv[1], xv[1], _mm512_mul_ps(vv[0], xv[0]))));
                const __m512 s = _mm512_mul_ps(kappa[k], px[k]);
                for (int i = 0; i < 4; i++) c[k][i] = _mm512_fmadd_ps(e[k], xv[i], s);
            }
        }
        __m512 m[2][4];
        for (int i = 0; i < 4; i++) {
            const __m512 a = _mm512_maskz_loadu_ps(msk, A + i * la + p);
            m[0][i] = _mm512_mul_ps(a, c[1][i]);
            m[1][i] = _mm512_mul_ps(a, c[0][i]);
        }
        for (int k = 0; k < 2; k++) {
            const __m512 sum = _mm512_add_ps(_mm512_add_ps(m[k][0], m[k][1]), _mm512_add_ps(m[k][2], m[k][3]));
            b[k] = _mm512_fmadd_ps(sum, px[k], b[k]);
            if (up[k])
                for (int i = 0; i < 4; i++)
                    _mm512_mask_storeu_ps(up[k] + i * la + p, msk, _mm512_fmadd_ps(e[k], m[k][i], _mm512_mul_ps(w[k][i], sum)));
        }
    }
    out[0] += _mm512_reduce_add_ps(b[0]);
    out[1] += _mm512_reduce_add_ps(b[1]);
}

/* G[i][j] += sum_p m_i[p] [code_p allows j], m = A * S, for a tip child given by its
 * codes: grad_four's sums with the tip's 0/1 planes as masks, so that none is read. */
static inline void pv_grad_tip_pd(int n, const double *PV_RESTRICT A, const double *PV_RESTRICT S,
                                  long ld, const uint8_t *PV_RESTRICT cd, double *G)
{
    __m512d acc[16];
    for (int q = 0; q < 16; q++) acc[q] = _mm512_setzero_pd();
    for (int p = 0; p < n; p += 8) {
        const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cd + p)));
        __mmask8 has[4];
        for (int j = 0; j < 4; j++) has[j] = _mm512_test_epi64_mask(idx, _mm512_set1_epi64(1 << j));
        for (int i = 0; i < 4; i++) {
            const __m512d m = _mm512_mul_pd(_mm512_loadu_pd(A + i * ld + p), _mm512_loadu_pd(S + i * ld + p));
            for (int j = 0; j < 4; j++) acc[4 * i + j] = _mm512_mask_add_pd(acc[4 * i + j], has[j], acc[4 * i + j], m);
        }
    }
    _mm512_storeu_pd(G, _mm512_add_pd(_mm512_loadu_pd(G), pv_lane_sums8_pd(acc)));
    _mm512_storeu_pd(G + 8, _mm512_add_pd(_mm512_loadu_pd(G + 8), pv_lane_sums8_pd(acc + 8)));
}

static inline void pv_grad_tip_ps(int n, const float *PV_RESTRICT A, const float *PV_RESTRICT S,
                                  long ld, const uint8_t *PV_RESTRICT cd, double *G)
{
    __m512 acc[16];
    for (int q = 0; q < 16; q++) acc[q] = _mm512_setzero_ps();
    for (int p = 0; p < n; p += 16) {
        const __mmask16 valid = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cd + p)));
        __mmask16 has[4];
        for (int j = 0; j < 4; j++) has[j] = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(1 << j)) & valid;
        for (int i = 0; i < 4; i++) {
            const __m512 m = _mm512_mul_ps(_mm512_maskz_loadu_ps(valid, A + i * ld + p),
                                           _mm512_maskz_loadu_ps(valid, S + i * ld + p));
            for (int j = 0; j < 4; j++) acc[4 * i + j] = _mm512_mask_add_ps(acc[4 * i + j], has[j], acc[4 * i + j], m);
        }
    }
    const __m512 sums = pv_lane_sums16_ps(acc);
    _mm512_storeu_pd(G, _mm512_add_pd(_mm512_loadu_pd(G), _mm512_cvtps_pd(_mm512_castps512_ps256(sums))));
    _mm512_storeu_pd(G + 8, _mm512_add_pd(_mm512_loadu_pd(G + 8),
                                          _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sums), 1)))));
}

/* D's tables, D = Q @ P: Q times P's tables (D @ code = Q @ (P @ code)), so that D itself
 * is never formed. */
static inline void pv_dir_tables_pd(const double *P, const double *Q, __m512d *lo, __m512d *hi)
{
    __m512d plo[4], phi[4];
    pv_tables_pd(P, plo, phi);
    for (int i = 0; i < 4; i++) {
        lo[i] = _mm512_mul_pd(_mm512_set1_pd(Q[4 * i]), plo[0]);
        hi[i] = _mm512_mul_pd(_mm512_set1_pd(Q[4 * i]), phi[0]);
        for (int k = 1; k < 4; k++) {
            lo[i] = _mm512_fmadd_pd(_mm512_set1_pd(Q[4 * i + k]), plo[k], lo[i]);
            hi[i] = _mm512_fmadd_pd(_mm512_set1_pd(Q[4 * i + k]), phi[k], hi[i]);
        }
    }
}

static inline void pv_dir_tables_ps(const float *P, const float *Q, __m512 *t)
{
    __m512 pt[4];
    pv_tables_ps(P, pt);
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_mul_ps(_mm512_set1_ps(Q[4 * i]), pt[0]);
        for (int k = 1; k < 4; k++) t[i] = _mm512_fmadd_ps(_mm512_set1_ps(Q[4 * i + k]), pt[k], t[i]);
    }
}

/* d lnL / d t of a tip child's edge along one direction D = Q @ P of its matrix P, when
 * only the branch lengths need a gradient: sum_p sum_i m_i[p] (D @ code_p)_i, m = A * S,
 * added to *g. D @ code is looked up as P @ code is in tip_node: a permute and a
 * multiply-add per row instead of grad_tip's 16 masked sums (pv_dir_tables_pd). */
static inline void pv_grad_tip_dir_pd(int n, const double *PV_RESTRICT A, const double *PV_RESTRICT S,
                                      long ld, const uint8_t *PV_RESTRICT cd, const double *P,
                                      const double *Q, double *g)
{
    __m512d lo[4], hi[4], acc[4];
    pv_dir_tables_pd(P, Q, lo, hi);
    for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_pd();
    for (int p = 0; p < n; p += 8) {
        const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cd + p)));
        for (int i = 0; i < 4; i++) {
            const __m512d m = _mm512_mul_pd(_mm512_loadu_pd(A + i * ld + p), _mm512_loadu_pd(S + i * ld + p));
            acc[i] = _mm512_fmadd_pd(m, _mm512_permutex2var_pd(lo[i], idx, hi[i]), acc[i]);
        }
    }
    *g += _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3])));
}

static inline void pv_grad_tip_dir_ps(int n, const float *PV_RESTRICT A, const float *PV_RESTRICT S,
                                      long ld, const uint8_t *PV_RESTRICT cd, const float *P,
                                      const float *Q, double *g)
{
    __m512 t[4], acc[4];
    pv_dir_tables_ps(P, Q, t);
    for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
    for (int p = 0; p < n; p += 16) {
        const __mmask16 valid = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cd + p)));
        for (int i = 0; i < 4; i++) {
            const __m512 m = _mm512_mul_ps(_mm512_maskz_loadu_ps(valid, A + i * ld + p),
                                           _mm512_maskz_loadu_ps(valid, S + i * ld + p));
            acc[i] = _mm512_fmadd_ps(m, _mm512_permutexvar_ps(idx, t[i]), acc[i]);
        }
    }
    *g += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

/* grad_four_f64 for an internal child whose sibling is a tip: the sibling's contribution
 * S = Ms @ code is looked up in the loop (as in tip_node) instead of read from a buffer
 * that a separate pass would fill. */
static inline void grad_four_tip_sibling_f64(int n, const double *PV_RESTRICT A, long la,
                                             const uint8_t *PV_RESTRICT cd, const double *Ms,
                                             const double *PV_RESTRICT x, long lx, double *G,
                                             const double *Mt, double *PV_RESTRICT up)
{
    double tab[4][16] __attribute__((aligned(64)));
    {
        __m512d lo[4], hi[4];
        pv_tables_pd(Ms, lo, hi);
        for (int i = 0; i < 4; i++) {
            _mm512_store_pd(tab[i], lo[i]);
            _mm512_store_pd(tab[i] + 8, hi[i]);
        }
    }
    __m512d g[16];
    for (int q = 0; q < 16; q++) g[q] = _mm512_setzero_pd();
    for (int p = 0; p < n; p += 8) {
        const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cd + p)));
        __m512d m[4], y[4];
        for (int i = 0; i < 4; i++)
            m[i] = _mm512_mul_pd(_mm512_loadu_pd(A + i * la + p),
                                 _mm512_permutex2var_pd(_mm512_load_pd(tab[i]), idx, _mm512_load_pd(tab[i] + 8)));
        if (up)
            for (int j = 0; j < 4; j++)
                _mm512_storeu_pd(up + j * la + p,
                                 _mm512_fmadd_pd(_mm512_set1_pd(Mt[4 * j + 3]), m[3],
                                                 _mm512_fmadd_pd(_mm512_set1_pd(Mt[4 * j + 2]), m[2],
                                                                 _mm512_fmadd_pd(_mm512_set1_pd(Mt[4 * j + 1]), m[1],
                                                                                 _mm512_mul_pd(_mm512_set1_pd(Mt[4 * j]), m[0])))));
        for (int j = 0; j < 4; j++) y[j] = _mm512_loadu_pd(x + j * lx + p);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) g[4 * i + j] = _mm512_fmadd_pd(m[i], y[j], g[4 * i + j]);
    }
    _mm512_storeu_pd(G, _mm512_add_pd(_mm512_loadu_pd(G), pv_lane_sums8_pd(g)));
    _mm512_storeu_pd(G + 8, _mm512_add_pd(_mm512_loadu_pd(G + 8), pv_lane_sums8_pd(g + 8)));
}

/* pv_grad_tip_dir_pd for a tip whose sibling is a tip too: S = Ps @ sibling's code,
 * looked up in the loop. */
static inline void pv_grad_tip_dir_tip_sibling_pd(int n, const double *PV_RESTRICT A, long ld,
                                                  const uint8_t *PV_RESTRICT cs, const double *Ps,
                                                  const uint8_t *PV_RESTRICT cd, const double *P,
                                                  const double *Q, double *g)
{
    __m512d lo[4], hi[4], slo[4], shi[4], acc[4];
    pv_dir_tables_pd(P, Q, lo, hi);
    pv_tables_pd(Ps, slo, shi);
    for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_pd();
    for (int p = 0; p < n; p += 8) {
        const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cd + p)));
        const __m512i ids = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cs + p)));
        for (int i = 0; i < 4; i++) {
            const __m512d m = _mm512_mul_pd(_mm512_loadu_pd(A + i * ld + p), _mm512_permutex2var_pd(slo[i], ids, shi[i]));
            acc[i] = _mm512_fmadd_pd(m, _mm512_permutex2var_pd(lo[i], idx, hi[i]), acc[i]);
        }
    }
    *g += _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3])));
}

/* The float32 z-form steps (see grad_four_z_f32) with a tip sibling looked up in the
 * loop, as the float64 ones above: an internal child's 6 sums and its upper, and a tip
 * child's direction beside a tip sibling. */
static inline double grad_four_z_tip_sibling_f32(int n, const float *PV_RESTRICT A, long ls,
                                                 const uint8_t *PV_RESTRICT cs, const float *Ms,
                                                 const float *PV_RESTRICT x, const float *M,
                                                 float *PV_RESTRICT up, const double *wz)
{
    __m512 st[4], h[6];
    pv_tables_ps(Ms, st);
    for (int k = 0; k < 6; k++) h[k] = _mm512_setzero_ps();
    for (int p = 0; p < n; p += 16) {
        const __mmask16 m = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        const __m512i ids = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cs + p)));
        __m512 a[4], u[4];
        for (int i = 0; i < 4; i++) {
            a[i] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, A + i * ls + p), _mm512_permutexvar_ps(ids, st[i]));
            u[i] = _mm512_maskz_loadu_ps(m, x + i * ls + p);
        }
        if (up)
            for (int j = 0; j < 4; j++)
                _mm512_mask_storeu_ps(up + j * ls + p, m,
                                      _mm512_fmadd_ps(_mm512_set1_ps(M[4 * j + 3]), a[3],
                                                      _mm512_fmadd_ps(_mm512_set1_ps(M[4 * j + 2]), a[2],
                                                                      _mm512_fmadd_ps(_mm512_set1_ps(M[4 * j + 1]), a[1],
                                                                                      _mm512_mul_ps(_mm512_set1_ps(M[4 * j]), a[0])))));
        const int pi_[6] = {0, 0, 0, 1, 1, 2}, pj_[6] = {1, 2, 3, 2, 3, 3};
        for (int k = 0; k < 6; k++)
            h[k] = _mm512_fmadd_ps(_mm512_sub_ps(a[pi_[k]], a[pj_[k]]), _mm512_sub_ps(u[pi_[k]], u[pj_[k]]), h[k]);
    }
    const __m512 zero = _mm512_setzero_ps();
    const __m512 r[16] = {h[0], h[1], h[2], h[3], h[4], h[5], zero, zero,
                          zero, zero, zero, zero, zero, zero, zero, zero};
    const __m512d sums = _mm512_cvtps_pd(_mm512_castps512_ps256(pv_lane_sums16_ps(r)));
    return _mm512_reduce_add_pd(_mm512_mul_pd(sums, _mm512_loadu_pd(wz)));
}

static inline void pv_grad_tip_dir_tip_sibling_ps(int n, const float *PV_RESTRICT A, long ld,
                                                  const uint8_t *PV_RESTRICT cs, const float *Ps,
                                                  const uint8_t *PV_RESTRICT cd, const float *P,
                                                  const float *Q, double *g)
{
    __m512 st[4], t[4], acc[4];
    pv_dir_tables_ps(P, Q, t);
    pv_tables_ps(Ps, st);
    for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
    for (int p = 0; p < n; p += 16) {
        const __mmask16 valid = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cd + p)));
        const __m512i ids = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cs + p)));
        for (int i = 0; i < 4; i++) {
            const __m512 m = _mm512_mul_ps(_mm512_maskz_loadu_ps(valid, A + i * ld + p),
                                           _mm512_permutexvar_ps(ids, st[i]));
            acc[i] = _mm512_fmadd_ps(m, _mm512_permutexvar_ps(idx, t[i]), acc[i]);
        }
    }
    *g += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

/* out = Mt @ tip for a tip given by its codes. */
static inline void pv_tip_lookup_pd(int n, const double *Mt, const uint8_t *PV_RESTRICT cd,
                                    double *PV_RESTRICT out, long ld)
{
    __m512d lo[4], hi[4];
    pv_tables_pd(Mt, lo, hi);
    for (int p = 0; p < n; p += 8) {
        const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(cd + p)));
        for (int i = 0; i < 4; i++)
            _mm512_storeu_pd(out + i * ld + p, _mm512_permutex2var_pd(lo[i], idx, hi[i]));
    }
}

static inline void pv_tip_lookup_ps(int n, const float *Mt, const uint8_t *PV_RESTRICT cd,
                                    float *PV_RESTRICT out, long ld)
{
    __m512 t[4];
    pv_tables_ps(Mt, t);
    for (int p = 0; p < n; p += 16) {
        const __mmask16 m = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cd + p)));
        for (int i = 0; i < 4; i++)
            _mm512_mask_storeu_ps(out + i * ld + p, m, _mm512_permutexvar_ps(idx, t[i]));
    }
}
#endif

#define PV_REAL double
#define PV_FN(name) name##_f64
#define PV_ZFORM 0 /* see grad_four_z_f32 */
#include "cpu_kernel.c"
#undef PV_REAL
#undef PV_FN
#undef PV_ZFORM
#define PV_REAL float
#define PV_FN(name) name##_f32
#define PV_ZFORM 1
#include "cpu_kernel.c"
#undef PV_REAL
#undef PV_FN
#undef PV_ZFORM

#else /* one precision */

#define real PV_REAL

/* d loss / d P accumulated into 16 doubles: G[i][j] += sum_p m_i[p] x_j[p]. Two
 * sweeps of 8 accumulators each: 16 would not fit in the 16 AVX2 registers. */
static inline void PV_FN(grad_rows)(int n, const real *PV_RESTRICT m0, const real *PV_RESTRICT m1,
                                    const real *PV_RESTRICT x, long lx, double *G)
{
    const real *PV_RESTRICT x0 = x, *PV_RESTRICT x1 = x + lx, *PV_RESTRICT x2 = x + 2 * lx,
               *PV_RESTRICT x3 = x + 3 * lx;
    real g00 = 0, g01 = 0, g02 = 0, g03 = 0, g10 = 0, g11 = 0, g12 = 0, g13 = 0;
#pragma omp simd reduction(+ : g00, g01, g02, g03, g10, g11, g12, g13)
    for (int p = 0; p < n; p++) {
        real a = m0[p], b = m1[p];
        real u = x0[p], v = x1[p], w = x2[p], z = x3[p];
        g00 += a * u; g01 += a * v; g02 += a * w; g03 += a * z;
        g10 += b * u; g11 += b * v; g12 += b * w; g13 += b * z;
    }
    G[0] += g00; G[1] += g01; G[2] += g02; G[3] += g03;
    G[4] += g10; G[5] += g11; G[6] += g12; G[7] += g13;
}

static inline void PV_FN(grad_inner)(int n, const real *PV_RESTRICT m, long lm,
                                     const real *PV_RESTRICT x, long lx, double *G)
{
#if PV_FOUR_ROWS
    PV_FN(grad_four)(n, m, lm, NULL, 0, x, lx, NULL, NULL, G, NULL, NULL);
#else
    PV_FN(grad_rows)(n, m, m + lm, x, lx, G);
    PV_FN(grad_rows)(n, m + 2 * lm, m + 3 * lm, x, lx, G + 8);
#endif
}

/* Two output planes i0, i0 + 1 of out = M @ x: 8 coefficients, 4 inputs and 2 sums
 * stay in registers (all four rows at once would spill on AVX2's 16 registers). */
static inline void PV_FN(two_rows)(int n, const real *PV_RESTRICT M, const real *PV_RESTRICT x,
                                   long lx, real *PV_RESTRICT o0, real *PV_RESTRICT o1)
{
    const real a0 = M[0], a1 = M[1], a2 = M[2], a3 = M[3];
    const real b0 = M[4], b1 = M[5], b2 = M[6], b3 = M[7];
    const real *PV_RESTRICT x0 = x, *PV_RESTRICT x1 = x + lx, *PV_RESTRICT x2 = x + 2 * lx,
               *PV_RESTRICT x3 = x + 3 * lx;
#pragma omp simd
    for (int p = 0; p < n; p++) {
        const real u = x0[p], v = x1[p], w = x2[p], z = x3[p];
        o0[p] = a0 * u + a1 * v + a2 * w + a3 * z;
        o1[p] = b0 * u + b1 * v + b2 * w + b3 * z;
    }
}

/* out (4 planes, stride ld) = M @ x: one sweep of four rows (AVX-512) or two of two. */
static inline void PV_FN(contribution)(int n, const real *M, const real *x, long lx, real *out,
                                       long ld)
{
    if (PV_FOUR_ROWS) {
        const real a0 = M[0], a1 = M[1], a2 = M[2], a3 = M[3], b0 = M[4], b1 = M[5], b2 = M[6],
                   b3 = M[7], c0 = M[8], c1 = M[9], c2 = M[10], c3 = M[11], d0 = M[12],
                   d1 = M[13], d2 = M[14], d3 = M[15];
        const real *PV_RESTRICT x0 = x, *PV_RESTRICT x1 = x + lx, *PV_RESTRICT x2 = x + 2 * lx,
                   *PV_RESTRICT x3 = x + 3 * lx;
        real *PV_RESTRICT o0 = out, *PV_RESTRICT o1 = out + ld, *PV_RESTRICT o2 = out + 2 * ld,
             *PV_RESTRICT o3 = out + 3 * ld;
#pragma omp simd
        for (int p = 0; p < n; p++) {
            const real u = x0[p], v = x1[p], w = x2[p], z = x3[p];
            o0[p] = a0 * u + a1 * v + a2 * w + a3 * z;
            o1[p] = b0 * u + b1 * v + b2 * w + b3 * z;
            o2[p] = c0 * u + c1 * v + c2 * w + c3 * z;
            o3[p] = d0 * u + d1 * v + d2 * w + d3 * z;
        }
        return;
    }
    PV_FN(two_rows)(n, M, x, lx, out, out + ld);
    PV_FN(two_rows)(n, M + 8, x, lx, out + 2 * ld, out + 3 * ld);
}

/* F81-family matrices (JC69, F81: equal exchangeabilities) are P = e I + 1 w^T, that is
 * P[i][j] = e [i == j] + w[j]; w[j] is any off-diagonal entry of column j. With them a
 * product M @ x takes 8 multiply-adds per pattern instead of 16. */
static inline void PV_FN(f81_contribution)(int n, const real *M, const real *x, long lx,
                                           real *out, long ld)
{
    const real w0 = M[4], w1 = M[1], w2 = M[2], w3 = M[3], e = M[0] - M[4];
    const real *PV_RESTRICT x0 = x, *PV_RESTRICT x1 = x + lx, *PV_RESTRICT x2 = x + 2 * lx,
               *PV_RESTRICT x3 = x + 3 * lx;
    real *PV_RESTRICT o0 = out, *PV_RESTRICT o1 = out + ld, *PV_RESTRICT o2 = out + 2 * ld,
         *PV_RESTRICT o3 = out + 3 * ld;
#pragma omp simd
    for (int p = 0; p < n; p++) {
        const real u = x0[p], v = x1[p], w = x2[p], z = x3[p];
        const real s = w0 * u + w1 * v + w2 * w + w3 * z;
        o0[p] = e * u + s;
        o1[p] = e * v + s;
        o2[p] = e * w + s;
        o3[p] = e * z + s;
    }
}

/* A node's partials o = (M0 @ x) * (M1 @ y) for F81-family matrices in one sweep, so
 * the node's two contributions never go through memory; L and R keep them when given
 * (the gradient's pre-order pass needs them). */
static inline void PV_FN(f81_node)(int n, const real *M0, const real *PV_RESTRICT x, long lx,
                                   const real *M1, const real *PV_RESTRICT y, long ly,
                                   real *PV_RESTRICT L, real *PV_RESTRICT R,
                                   real *PV_RESTRICT o, long ld)
{
    const real a0 = M0[4], a1 = M0[1], a2 = M0[2], a3 = M0[3], ea = M0[0] - M0[4];
    const real b0 = M1[4], b1 = M1[1], b2 = M1[2], b3 = M1[3], eb = M1[0] - M1[4];
    const real *PV_RESTRICT x0 = x, *PV_RESTRICT x1 = x + lx, *PV_RESTRICT x2 = x + 2 * lx,
               *PV_RESTRICT x3 = x + 3 * lx;
    const real *PV_RESTRICT y0 = y, *PV_RESTRICT y1 = y + ly, *PV_RESTRICT y2 = y + 2 * ly,
               *PV_RESTRICT y3 = y + 3 * ly;
    if (!L) {
#pragma omp simd
        for (int p = 0; p < n; p++) {
            const real sa = a0 * x0[p] + a1 * x1[p] + a2 * x2[p] + a3 * x3[p];
            const real sb = b0 * y0[p] + b1 * y1[p] + b2 * y2[p] + b3 * y3[p];
            o[p] = (ea * x0[p] + sa) * (eb * y0[p] + sb);
            o[ld + p] = (ea * x1[p] + sa) * (eb * y1[p] + sb);
            o[2 * ld + p] = (ea * x2[p] + sa) * (eb * y2[p] + sb);
            o[3 * ld + p] = (ea * x3[p] + sa) * (eb * y3[p] + sb);
        }
        return;
    }
#pragma omp simd
    for (int p = 0; p < n; p++) {
        const real sa = a0 * x0[p] + a1 * x1[p] + a2 * x2[p] + a3 * x3[p];
        const real sb = b0 * y0[p] + b1 * y1[p] + b2 * y2[p] + b3 * y3[p];
        for (int i = 0; i < 4; i++) {
            const real l = ea * x[i * lx + p] + sa, r = eb * y[i * ly + p] + sb;
            L[i * ld + p] = l;
            R[i * ld + p] = r;
            o[i * ld + p] = l * r;
        }
    }
}

/* Two planes of o = L * (M @ y) (rows i0, i0 + 1 of M given as M), R = M @ y kept when
 * given: the second child's contribution goes straight into the node's partials. */
static inline void PV_FN(two_rows_times)(int n, const real *PV_RESTRICT M, const real *PV_RESTRICT y,
                                         long ly, const real *PV_RESTRICT L0,
                                         const real *PV_RESTRICT L1, real *PV_RESTRICT R0,
                                         real *PV_RESTRICT R1, real *PV_RESTRICT o0,
                                         real *PV_RESTRICT o1)
{
    const real a0 = M[0], a1 = M[1], a2 = M[2], a3 = M[3];
    const real b0 = M[4], b1 = M[5], b2 = M[6], b3 = M[7];
    const real *PV_RESTRICT y0 = y, *PV_RESTRICT y1 = y + ly, *PV_RESTRICT y2 = y + 2 * ly,
               *PV_RESTRICT y3 = y + 3 * ly;
    if (!R0) {
#pragma omp simd
        for (int p = 0; p < n; p++) {
            const real u = y0[p], v = y1[p], w = y2[p], z = y3[p];
            o0[p] = L0[p] * (a0 * u + a1 * v + a2 * w + a3 * z);
            o1[p] = L1[p] * (b0 * u + b1 * v + b2 * w + b3 * z);
        }
        return;
    }
#pragma omp simd
    for (int p = 0; p < n; p++) {
        const real u = y0[p], v = y1[p], w = y2[p], z = y3[p];
        const real r0 = a0 * u + a1 * v + a2 * w + a3 * z, r1 = b0 * u + b1 * v + b2 * w + b3 * z;
        R0[p] = r0;
        R1[p] = r1;
        o0[p] = L0[p] * r0;
        o1[p] = L1[p] * r1;
    }
}

/* o = L * (M1 @ y), R = M1 @ y kept when given, for any matrix M1. */
static inline void PV_FN(general_times)(int n, const real *M1, const real *y, long ly,
                                        const real *L, real *R, real *o, long ld)
{
    if (PV_FOUR_ROWS) {
        const real a0 = M1[0], a1 = M1[1], a2 = M1[2], a3 = M1[3], b0 = M1[4], b1 = M1[5],
                   b2 = M1[6], b3 = M1[7], c0 = M1[8], c1 = M1[9], c2 = M1[10], c3 = M1[11],
                   d0 = M1[12], d1 = M1[13], d2 = M1[14], d3 = M1[15];
        const real *PV_RESTRICT y0 = y, *PV_RESTRICT y1 = y + ly, *PV_RESTRICT y2 = y + 2 * ly,
                   *PV_RESTRICT y3 = y + 3 * ly;
        real *PV_RESTRICT o0 = o, *PV_RESTRICT o1 = o + ld, *PV_RESTRICT o2 = o + 2 * ld,
             *PV_RESTRICT o3 = o + 3 * ld;
        const real *PV_RESTRICT L0 = L, *PV_RESTRICT L1 = L + ld, *PV_RESTRICT L2 = L + 2 * ld,
                   *PV_RESTRICT L3 = L + 3 * ld;
#define PV_GENERAL_FOUR_BODY                                                               \
    const real u = y0[p], v = y1[p], w = y2[p], z = y3[p];                                \
    const real r0 = a0 * u + a1 * v + a2 * w + a3 * z, r1 = b0 * u + b1 * v + b2 * w + b3 * z; \
    const real r2 = c0 * u + c1 * v + c2 * w + c3 * z, r3 = d0 * u + d1 * v + d2 * w + d3 * z; \
    o0[p] = L0[p] * r0; o1[p] = L1[p] * r1; o2[p] = L2[p] * r2; o3[p] = L3[p] * r3;
        if (R) {
            real *PV_RESTRICT R0 = R, *PV_RESTRICT R1 = R + ld, *PV_RESTRICT R2 = R + 2 * ld,
                 *PV_RESTRICT R3 = R + 3 * ld;
#pragma omp simd
            for (int p = 0; p < n; p++) {
                PV_GENERAL_FOUR_BODY
                R0[p] = r0; R1[p] = r1; R2[p] = r2; R3[p] = r3;
            }
        } else {
#pragma omp simd
            for (int p = 0; p < n; p++) {
                PV_GENERAL_FOUR_BODY
            }
        }
#undef PV_GENERAL_FOUR_BODY
        return;
    }
    for (int i = 0; i < 4; i += 2)
        PV_FN(two_rows_times)(n, M1 + 4 * i, y, ly, L + i * ld, L + (i + 1) * ld,
                              R ? R + i * ld : NULL, R ? R + (i + 1) * ld : NULL, o + i * ld,
                              o + (i + 1) * ld);
}

/* A node's partials o = (M0 @ x) * (M1 @ y) for any matrices; L and R as in f81_node,
 * except that L is always written (it is the first product's scratch). */
static inline void PV_FN(general_node)(int n, const real *M0, const real *x, long lx,
                                       const real *M1, const real *y, long ly, real *L, real *R,
                                       real *o, long ld)
{
    PV_FN(contribution)(n, M0, x, lx, L, ld);
    PV_FN(general_times)(n, M1, y, ly, L, R, o, ld);
}

#if PV_FOUR_ROWS
/* Tips given by their codes (AVX-512 builds only: elsewhere the lookups would be
 * scalar or gathers, and the planes' multiply-adds were not measured against them). */

/* out = Mt @ tip for a tip given by its codes (4-bit state masks, bit j: state j). */
static inline void PV_FN(tip_contribution)(int n, const real *Mt, const uint8_t *PV_RESTRICT cd,
                                           real *PV_RESTRICT out, long ld)
{
    if (sizeof(real) == 8)
        pv_tip_lookup_pd(n, (const double *)Mt, cd, (double *)out, ld);
    else
        pv_tip_lookup_ps(n, (const float *)Mt, cd, (float *)out, ld);
}

/* A node's partials o = (Mt @ tip) * (M1 @ y) when one child is a tip given by its codes
 * cd, the other by its codes cd1 or its planes y, in one sweep; Lt and Ry keep the two
 * contributions when given. */
static inline void PV_FN(tip_node)(int f81, int n, const real *Mt, const uint8_t *cd,
                                   const real *M1, const real *y, long ly, const uint8_t *cd1,
                                   real *Lt, real *Ry, real *o, long ld)
{
    if (sizeof(real) == 8)
        pv_tip_node_pd(n, (const double *)Mt, cd, (const double *)M1, (const double *)y, ly, cd1,
                       f81, (double *)Lt, (double *)Ry, (double *)o, ld);
    else
        pv_tip_node_ps(n, (const float *)Mt, cd, (const float *)M1, (const float *)y, ly, cd1,
                       f81, (float *)Lt, (float *)Ry, (float *)o, ld);
}
#endif

/* Adds to G the matrix alpha I + 1 (h - alpha)^T / 4, alpha = (g - sum h / 4) / 3: its
 * trace is g and its column sums are h (see f81_backward). */
static inline void PV_FN(f81_gradient)(double g, double h0, double h1, double h2, double h3,
                                       double *G)
{
    const double h[4] = {h0, h1, h2, h3};
    const double alpha = (g - (h0 + h1 + h2 + h3) / 4) / 3;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) G[4 * i + j] += (i == j ? alpha : 0.0) + (h[j] - alpha) / 4;
}

/* The pre-order step of child_backward for an F81-family M (its msg is already made).
 * An F81 model's P moves only in directions a I + 1 v^T, so G gets a matrix that agrees
 * with d lnL / d P on all of them: trace g = sum_p m . x and column sums
 * h_j = sum_p (sum_i m_i) x_j (f81_gradient).
 * 9 multiply-adds per pattern instead of 16; up_j = e m_j + w_j sum_i m_i instead of 16 more. */
static inline void PV_FN(f81_backward)(int n, const real *PV_RESTRICT msg, long lm,
                                       const real *PV_RESTRICT x, long lx, const real *M,
                                       real *PV_RESTRICT up, double *G)
{
    const real *PV_RESTRICT m0 = msg, *PV_RESTRICT m1 = msg + lm, *PV_RESTRICT m2 = msg + 2 * lm,
               *PV_RESTRICT m3 = msg + 3 * lm;
    const real *PV_RESTRICT x0 = x, *PV_RESTRICT x1 = x + lx, *PV_RESTRICT x2 = x + 2 * lx,
               *PV_RESTRICT x3 = x + 3 * lx;
    real g = 0, h0 = 0, h1 = 0, h2 = 0, h3 = 0;
#pragma omp simd reduction(+ : g, h0, h1, h2, h3)
    for (int p = 0; p < n; p++) {
        const real a = m0[p], b = m1[p], c = m2[p], d = m3[p];
        const real u = x0[p], v = x1[p], w = x2[p], z = x3[p];
        const real sum = (a + b) + (c + d);
        g += a * u + b * v + c * w + d * z;
        h0 += sum * u; h1 += sum * v; h2 += sum * w; h3 += sum * z;
    }
    PV_FN(f81_gradient)(g, h0, h1, h2, h3, G);
    if (!up) return;
    const real w0 = M[4], w1 = M[1], w2 = M[2], w3 = M[3], e = M[0] - M[4];
    real *PV_RESTRICT u0 = up, *PV_RESTRICT u1 = up + lm, *PV_RESTRICT u2 = up + 2 * lm,
         *PV_RESTRICT u3 = up + 3 * lm;
#pragma omp simd
    for (int p = 0; p < n; p++) {
        const real a = m0[p], b = m1[p], c = m2[p], d = m3[p];
        const real sum = (a + b) + (c + d);
        u0[p] = e * a + w0 * sum;
        u1[p] = e * b + w1 * sum;
        u2[p] = e * c + w2 * sum;
        u3[p] = e * d + w3 * sum;
    }
}

/* sc[p] = the largest of the nq partials of pattern p (planes of stride ld) */
static inline void PV_FN(pattern_maxima)(int n, const real *PV_RESTRICT o, long ld, int nq,
                                         real *PV_RESTRICT sc)
{
    for (int p = 0; p < n; p++) sc[p] = 0;
    for (int q = 0; q < nq; q++) {
        const real *PV_RESTRICT plane = o + q * ld;
#pragma omp simd
        for (int p = 0; p < n; p++) sc[p] = plane[p] > sc[p] ? plane[p] : sc[p];
    }
}

#if PV_FOUR_ROWS
/* Whether any of the n patterns (a multiple of 8) has its largest partial, over the nq
 * planes of stride ld, below low: pattern_maxima's test in one read that stores
 * nothing. It runs at every node when rescaling is on and most nodes need none;
 * pattern_maxima's stores plane by plane cost a third of a JC node's time. (In the
 * two-row build, where the same check written in plain C came out 2-20% slower than
 * pattern_maxima, the maxima are stored.) */
static inline int PV_FN(any_below)(int n, const real *PV_RESTRICT o, long ld, int nq, real low)
{
    if (sizeof(real) == 8) {
        const double *d = (const double *)o;
        for (int p = 0; p < n; p += 8) {
            __m512d mx = _mm512_loadu_pd(d + p);
            for (int q = 1; q < nq; q++) mx = _mm512_max_pd(mx, _mm512_loadu_pd(d + q * ld + p));
            if (_mm512_cmp_pd_mask(mx, _mm512_set1_pd((double)low), _CMP_LT_OQ)) return 1;
        }
    } else {
        const float *f = (const float *)o;
        for (int p = 0; p < n; p += 16) {
            const __mmask16 m = n - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - p)) - 1);
            __m512 mx = _mm512_maskz_loadu_ps(m, f + p);
            for (int q = 1; q < nq; q++) mx = _mm512_max_ps(mx, _mm512_maskz_loadu_ps(m, f + q * ld + p));
            if (_mm512_mask_cmp_ps_mask(m, mx, _mm512_set1_ps((float)low), _CMP_LT_OQ)) return 1;
        }
    }
    return 0;
}
#endif

/* out = M @ x through whichever of the two paths the model allows. */
static inline void PV_FN(product)(int f81, int n, const real *M, const real *x, long lx, real *out,
                                  long ld)
{
    if (f81) PV_FN(f81_contribution)(n, M, x, lx, out, ld);
    else PV_FN(contribution)(n, M, x, lx, out, ld);
}

/* Where child k of a node keeps its partials for category c: the tip planes, or the
 * task's scratch `part` (buffer slot[child] when slot is given, else one per node);
 * sets *lx to the plane stride. */
static inline const real *PV_FN(child_x)(const pv_plan *pl, const int32_t *slot, int node,
                                         int first, int k, int c, int p0, const real *tips,
                                         const real *part, long node_sz, int blk, long *lx)
{
    const int ref = pl->ch_ref[3 * node + k];
    if (ref < 0) {
        *lx = pl->n_padded;
        return tips + (long)(-ref - 1) * 4 * pl->n_padded + p0;
    }
    *lx = blk;
    return part + (slot ? slot[ref] : ref - first) * node_sz + (long)c * 4 * blk;
}

/* Child k's tip codes from pattern p0 on, or NULL when it is an internal node (or the
 * caller passed no codes). */
static inline const uint8_t *PV_FN(child_codes)(const pv_plan *pl, const uint8_t *codes,
                                                int node, int k, int p0)
{
    const int ref = pl->ch_ref[3 * node + k];
    return codes && ref < 0 ? codes + (long)(-ref - 1) * pl->n_padded + p0 : NULL;
}

/* Contribution k (0 or 1) of category c at a node, for the pre-order pass: the one the
 * post-order pass kept in `contrib`, or, for a tip child of a node of two children, whose
 * contribution that pass does not store (a lookup costs less than the memory traffic:
 * the kept contributions outgrow the caches), looked up again into buf. */
static inline const real *PV_FN(kept_contribution)(const pv_plan *pl, const uint8_t *codes,
                                                   const real *mats, int s, int node, int first,
                                                   int k, int c, int p0, int n, const real *contrib,
                                                   long node_sz, real *buf, int blk)
{
#if PV_FOUR_ROWS
    const uint8_t *cd = PV_FN(child_codes)(pl, codes, node, k, p0);
    if (cd && pl->node_nch[node] == 2) {
        const int S = pl->n_samples, C = pl->n_categories;
        PV_FN(tip_contribution)(n, mats + (((long)pl->ch_edge[3 * node + k] * S + s) * C + c) * 16, cd,
                                buf, blk);
        return buf;
    }
#else
    (void)codes, (void)mats, (void)s, (void)p0, (void)n, (void)buf;
#endif
    return contrib + (2L * (node - first) + k) * node_sz + (long)c * 4 * blk;
}

/* grad_rows with the message rows built on the fly, m_i = A_i * S_i: a node of two
 * children never stores its messages (stores are what the kernel waits on). */
static inline void PV_FN(grad_rows_m)(int n, const real *PV_RESTRICT A0, const real *PV_RESTRICT A1,
                                      const real *PV_RESTRICT S0, const real *PV_RESTRICT S1,
                                      const real *PV_RESTRICT x, long lx, double *G)
{
    const real *PV_RESTRICT x0 = x, *PV_RESTRICT x1 = x + lx, *PV_RESTRICT x2 = x + 2 * lx,
               *PV_RESTRICT x3 = x + 3 * lx;
    real g00 = 0, g01 = 0, g02 = 0, g03 = 0, g10 = 0, g11 = 0, g12 = 0, g13 = 0;
#pragma omp simd reduction(+ : g00, g01, g02, g03, g10, g11, g12, g13)
    for (int p = 0; p < n; p++) {
        const real a = A0[p] * S0[p], b = A1[p] * S1[p];
        const real u = x0[p], v = x1[p], w = x2[p], z = x3[p];
        g00 += a * u; g01 += a * v; g02 += a * w; g03 += a * z;
        g10 += b * u; g11 += b * v; g12 += b * w; g13 += b * z;
    }
    G[0] += g00; G[1] += g01; G[2] += g02; G[3] += g03;
    G[4] += g10; G[5] += g11; G[6] += g12; G[7] += g13;
}

/* Two planes j0, j0 + 1 of up = m @ P with m = A * S built on the fly; Mt holds
 * columns j0 and j0 + 1 of P as two rows of 4. */
static inline void PV_FN(two_cols_m)(int n, const real *PV_RESTRICT Mt, const real *PV_RESTRICT A,
                                     const real *PV_RESTRICT S, long ld, real *PV_RESTRICT o0,
                                     real *PV_RESTRICT o1)
{
    const real a0 = Mt[0], a1 = Mt[1], a2 = Mt[2], a3 = Mt[3];
    const real b0 = Mt[4], b1 = Mt[5], b2 = Mt[6], b3 = Mt[7];
#pragma omp simd
    for (int p = 0; p < n; p++) {
        const real u = A[p] * S[p], v = A[ld + p] * S[ld + p], w = A[2 * ld + p] * S[2 * ld + p],
                   z = A[3 * ld + p] * S[3 * ld + p];
        o0[p] = a0 * u + a1 * v + a2 * w + a3 * z;
        o1[p] = b0 * u + b1 * v + b2 * w + b3 * z;
    }
}

/* The whole pre-order step to child k of an F81-family node of two children, in one
 * sweep: the message m = A * (Ms @ y), y the sibling's partials, is rebuilt from them
 * (the forward pass keeps no contributions on this path), then G as in f81_backward
 * and, for an internal child, up = m @ Mk. */
static inline void PV_FN(f81_backward_pair)(int n, const real *PV_RESTRICT A, long la,
                                            const real *Ms, const real *PV_RESTRICT y, long ly,
                                            const real *Mk, const real *PV_RESTRICT x, long lx,
                                            real *PV_RESTRICT up, double *G)
{
    const real s0 = Ms[4], s1 = Ms[1], s2 = Ms[2], s3 = Ms[3], es = Ms[0] - Ms[4];
    const real k0 = Mk[4], k1 = Mk[1], k2 = Mk[2], k3 = Mk[3], ek = Mk[0] - Mk[4];
    const real *PV_RESTRICT A0 = A, *PV_RESTRICT A1 = A + la, *PV_RESTRICT A2 = A + 2 * la,
               *PV_RESTRICT A3 = A + 3 * la;
    const real *PV_RESTRICT y0 = y, *PV_RESTRICT y1 = y + ly, *PV_RESTRICT y2 = y + 2 * ly,
               *PV_RESTRICT y3 = y + 3 * ly;
    const real *PV_RESTRICT x0 = x, *PV_RESTRICT x1 = x + lx, *PV_RESTRICT x2 = x + 2 * lx,
               *PV_RESTRICT x3 = x + 3 * lx;
    real g = 0, h0 = 0, h1 = 0, h2 = 0, h3 = 0;
#define PV_F81_MESSAGE                                                                    \
    const real sy = s0 * y0[p] + s1 * y1[p] + s2 * y2[p] + s3 * y3[p];                    \
    const real a = A0[p] * (es * y0[p] + sy), b = A1[p] * (es * y1[p] + sy),             \
               c = A2[p] * (es * y2[p] + sy), d = A3[p] * (es * y3[p] + sy);             \
    const real u = x0[p], v = x1[p], w = x2[p], z = x3[p];                                \
    const real sum = (a + b) + (c + d);                                                   \
    g += a * u + b * v + c * w + d * z;                                                   \
    h0 += sum * u; h1 += sum * v; h2 += sum * w; h3 += sum * z;
    if (up) {
        real *PV_RESTRICT u0 = up, *PV_RESTRICT u1 = up + la, *PV_RESTRICT u2 = up + 2 * la,
             *PV_RESTRICT u3 = up + 3 * la;
#pragma omp simd reduction(+ : g, h0, h1, h2, h3)
        for (int p = 0; p < n; p++) {
            PV_F81_MESSAGE
            u0[p] = ek * a + k0 * sum;
            u1[p] = ek * b + k1 * sum;
            u2[p] = ek * c + k2 * sum;
            u3[p] = ek * d + k3 * sum;
        }
    } else {
#pragma omp simd reduction(+ : g, h0, h1, h2, h3)
        for (int p = 0; p < n; p++) {
            PV_F81_MESSAGE
        }
    }
#undef PV_F81_MESSAGE
    PV_FN(f81_gradient)(g, h0, h1, h2, h3, G);
}

/* f81_backward_pair with the tips among sibling (cdy) and child (cdx) given by their
 * codes: no tip plane is read (AVX-512; elsewhere the planes serve). */
static inline void PV_FN(f81_backward_codes)(int n, const real *A, long la, const real *Ms,
                                             const real *y, long ly, const uint8_t *cdy,
                                             const real *Mk, const real *x, long lx,
                                             const uint8_t *cdx, real *up, double *G)
{
#if PV_FOUR_ROWS
    double sums[5];
    if (sizeof(real) == 8)
        pv_f81_pair_pd(n, (const double *)A, la, (const double *)Ms, (const double *)y, ly, cdy,
                       (const double *)Mk, (const double *)x, lx, cdx, (double *)up, la, sums);
    else
        pv_f81_pair_ps(n, (const float *)A, la, (const float *)Ms, (const float *)y, ly, cdy,
                       (const float *)Mk, (const float *)x, lx, cdx, (float *)up, la, sums);
    PV_FN(f81_gradient)(sums[0], sums[1], sums[2], sums[3], sums[4], G);
#else
    (void)cdy;
    (void)cdx;
    PV_FN(f81_backward_pair)(n, A, la, Ms, y, ly, Mk, x, lx, up, G);
#endif
}

/* The pre-order step to both children of an F81-family node of two children when only
 * the derivatives along D = Q P are wanted (Q the F81 rate matrix mu (1 pi^T - I),
 * given as v = mu pi). With P = e I + (1 - e) 1 pi^T, m . (P x) = e (m . x) + (1 - e) b,
 * b = (sum_i m_i)(pi . x), and d/d(r t) of it is -mu e (m . x - b) = -mu (m . (P x) - b).
 * Summed over the patterns, m . (P x) is the same for every edge (the category's share
 * of the site likelihood, q_c, which the root gives), so an edge's derivative is
 * mu (sum_p b - q_c): the sums need neither m . x nor the family's four column sums.
 * Here out[k] += sum_p (sum_i m_k,i)(v . x_k), with m_0 = A * (M1 @ x1) and
 * m_1 = A * (M0 @ x0), and, for an internal child k, up_k = m_k @ M_k; the caller
 * subtracts mu q_c. One sweep for both children: each child's partials are read once. */
static inline void PV_FN(f81_dir_pair)(int n, const real *PV_RESTRICT A, long la,
                                       const real *M0, const real *PV_RESTRICT x0, long l0,
                                       const uint8_t *cd0, const real *M1,
                                       const real *PV_RESTRICT x1, long l1, const uint8_t *cd1,
                                       const real *v, real *PV_RESTRICT up0,
                                       real *PV_RESTRICT up1, double *out)
{
#if PV_FOUR_ROWS
    if (sizeof(real) == 8)
        pv_f81_dir_pair_pd(n, (const double *)A, la, (const double *)M0, (const double *)x0, l0, cd0,
                           (const double *)M1, (const double *)x1, l1, cd1, (const double *)v,
                           (double *)up0, (double *)up1, out);
    else
        pv_f81_dir_pair_ps(n, (const float *)A, la, (const float *)M0, (const float *)x0, l0, cd0,
                           (const float *)M1, (const float *)x1, l1, cd1, (const float *)v,
                           (float *)up0, (float *)up1, out);
#else
    (void)cd0, (void)cd1;
    const real v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3], mu = v0 + v1 + v2 + v3;
    const real e0 = M0[0] - M0[4], e1 = M1[0] - M1[4];
    const real a0 = M0[4], a1 = M0[1], a2 = M0[2], a3 = M0[3], kappa0 = (a0 + a1 + a2 + a3) / mu;
    const real c0 = M1[4], c1 = M1[1], c2 = M1[2], c3 = M1[3], kappa1 = (c0 + c1 + c2 + c3) / mu;
    real b0 = 0, b1 = 0;
#pragma omp simd reduction(+ : b0, b1)
    for (int p = 0; p < n; p++) {
        const real x00 = x0[p], x01 = x0[l0 + p], x02 = x0[2 * l0 + p], x03 = x0[3 * l0 + p];
        const real x10 = x1[p], x11 = x1[l1 + p], x12 = x1[2 * l1 + p], x13 = x1[3 * l1 + p];
        const real px0 = v0 * x00 + v1 * x01 + v2 * x02 + v3 * x03;
        const real px1 = v0 * x10 + v1 * x11 + v2 * x12 + v3 * x13;
        const real s0 = kappa0 * px0, s1 = kappa1 * px1;
        const real A0 = A[p], A1 = A[la + p], A2 = A[2 * la + p], A3 = A[3 * la + p];
        /* m_0 = A * (child 1's contribution), m_1 = A * (child 0's) */
        const real m00 = A0 * (e1 * x10 + s1), m01 = A1 * (e1 * x11 + s1),
                   m02 = A2 * (e1 * x12 + s1), m03 = A3 * (e1 * x13 + s1);
        const real m10 = A0 * (e0 * x00 + s0), m11 = A1 * (e0 * x01 + s0),
                   m12 = A2 * (e0 * x02 + s0), m13 = A3 * (e0 * x03 + s0);
        const real sum0 = (m00 + m01) + (m02 + m03), sum1 = (m10 + m11) + (m12 + m13);
        b0 += sum0 * px0;
        b1 += sum1 * px1;
        if (up0) {
            up0[p] = e0 * m00 + a0 * sum0; up0[la + p] = e0 * m01 + a1 * sum0;
            up0[2 * la + p] = e0 * m02 + a2 * sum0; up0[3 * la + p] = e0 * m03 + a3 * sum0;
        }
        if (up1) {
            up1[p] = e1 * m10 + c0 * sum1; up1[la + p] = e1 * m11 + c1 * sum1;
            up1[2 * la + p] = e1 * m12 + c2 * sum1; up1[3 * la + p] = e1 * m13 + c3 * sum1;
        }
    }
    out[0] += b0;
    out[1] += b1;
#endif
}

/* The pre-order step to one child: message m = upper * sibling (4 planes), then
 * G += m (x) x and, for an internal child, its upper = m @ P. The child's partials x
 * are x * x2 * sx when x2 is given (its two contributions and its scale, or sx = NULL),
 * built into xbuf unless the sweep builds them on the fly. */
static inline void PV_FN(child_backward)(int n, const real *PV_RESTRICT A,
                                         const real *PV_RESTRICT sib1, const real *PV_RESTRICT sib2,
                                         const real *PV_RESTRICT x, long lx,
                                         const real *PV_RESTRICT x2, const real *PV_RESTRICT sx,
                                         const real *M, real *PV_RESTRICT up, real *PV_RESTRICT msg,
                                         real *PV_RESTRICT xbuf, int blk, int f81, double *G)
{
#if PV_FOUR_ROWS
    if (!sib2 && !f81) { /* two children: the message is never stored; G and up in one sweep */
        const real Mt[16] = {M[0], M[4], M[8], M[12], M[1], M[5], M[9], M[13],
                             M[2], M[6], M[10], M[14], M[3], M[7], M[11], M[15]};
        PV_FN(grad_four)(n, A, blk, sib1, blk, x, lx, x2, sx, G, Mt, up);
        return;
    }
#endif
    if (x2) {
        for (int i = 0; i < 4; i++) {
            const real *PV_RESTRICT a = x + i * lx, *PV_RESTRICT b = x2 + i * lx;
            real *PV_RESTRICT o = xbuf + i * blk;
            if (sx) {
#pragma omp simd
                for (int p = 0; p < n; p++) o[p] = a[p] * b[p] * sx[p];
            } else {
#pragma omp simd
                for (int p = 0; p < n; p++) o[p] = a[p] * b[p];
            }
        }
        x = xbuf;
        lx = blk;
    }
    if (!sib2 && !f81) {
        PV_FN(grad_rows_m)(n, A, A + blk, sib1, sib1 + blk, x, lx, G);
        PV_FN(grad_rows_m)(n, A + 2 * blk, A + 3 * blk, sib1 + 2 * blk, sib1 + 3 * blk, x, lx, G + 8);
        if (up) {
            const real Mt[16] = {M[0], M[4], M[8], M[12], M[1], M[5], M[9], M[13],
                                 M[2], M[6], M[10], M[14], M[3], M[7], M[11], M[15]};
            PV_FN(two_cols_m)(n, Mt, A, sib1, blk, up, up + blk);
            PV_FN(two_cols_m)(n, Mt + 8, A, sib1, blk, up + 2 * blk, up + 3 * blk);
        }
        return;
    }
    if (sib2) {
#pragma omp simd
        for (int q = 0; q < 4 * blk; q++) msg[q] = A[q] * sib1[q] * sib2[q];
    } else {
#pragma omp simd
        for (int q = 0; q < 4 * blk; q++) msg[q] = A[q] * sib1[q];
    }
    if (f81) {
        PV_FN(f81_backward)(n, msg, blk, x, lx, M, up, G);
        return;
    }
    PV_FN(grad_inner)(n, msg, blk, x, lx, G);
    if (up) {
        /* up_j = sum_i m_i P[i][j], two columns per sweep (see two_rows) */
        const real Mt[16] = {M[0], M[4], M[8], M[12], M[1], M[5], M[9], M[13],
                             M[2], M[6], M[10], M[14], M[3], M[7], M[11], M[15]};
        PV_FN(contribution)(n, Mt, msg, blk, up, blk);
    }
}

/* The log-likelihood of every (topology, sample) and, when jac_mats is given, its
 * gradient with respect to that tree's own transition matrices, the frequencies and
 * pinv. Each task (topology, sample, block of patterns) runs the post-order pass,
 * the site log-likelihoods and the pre-order pass on per-thread scratch that holds
 * only its block, so nothing of size n_slots x n_patterns is ever stored.
 *   catw [C] category probabilities; weights [P] pattern weights;
 *   inv [4][Pp] 1 where every tip allows the state (constant patterns);
 *   lnl [B][S][n_blocks] out, partial sums over each block;
 *   site_ll [B][S][P] out when given: each pattern's log-likelihood;
 *   jac_mats [B*n_edges][S][C][16], jac_other [B][S][5] (d/d frequencies, d/d pinv) out;
 *   f81: every matrix is of the F81 family and only moves within it (see f81_backward):
 *       jac_mats is then d lnL / d P on those directions only.
 *   gen [16], rates [C], jac_times [B][S][n_edges] out: instead of jac_mats, the
 *       derivative along D_c = gen @ P_c of each edge's matrices P_c (category c),
 *       sum_c rates[c] <d lnL / d P_c, D_c>: with gen the rate matrix Q and rates the
 *       categories' rates, P_c = exp(Q rates[c] t) and this is d lnL / d t, the branch
 *       lengths' gradient, in their own layout. Since <m x^T, Q P> = <m (P x)^T, Q>, an
 *       edge's 16 sums are then taken
 *       over its contribution P x, which the post-order pass kept, instead of the
 *       child's partials, and contracted with Q; a tip child's edge needs no 16 sums
 *       (see grad_tip_dir). With f81, gen must be the model's own rate matrix, an edge
 *       needs one sum (see f81_dir_pair). The caller passes
 *       jac_other = NULL then: the frequencies and pinv are not differentiated. */
int PV_FN(pv_loglik)(const pv_plan *pl, int n_edges, const real *mats, const real *tips,
                     const real *freq, const real *catw, double pinv, const real *weights,
                     const real *inv, int rescale, double *lnl, real *site_ll,
                     real *jac_mats, real *jac_other, int f81, const uint8_t *codes,
                     const real *gen, const double *rates, double *jac_times, int n_threads)
{
    const int S = pl->n_samples, C = pl->n_categories, P = pl->n_patterns, Pp = pl->n_padded;
    const int blk = pl->block, B = pl->n_topologies;
    const int n_blocks = (Pp + blk - 1) / blk;
    const int grad = jac_mats != NULL || jac_times != NULL;
    const int dirs = grad && gen != NULL && !f81;
    /* F81 along Q: one sum per edge and category (f81_dir_pair), into the same rows as
     * the general model's tip edges; v = mu pi, column j's off-diagonal entry of Q */
    const int f81dir = grad && gen != NULL && f81, scalar = dirs || f81dir;
    real v[4] = {0, 0, 0, 0};
    if (f81dir)
        for (int j = 0; j < 4; j++) v[j] = gen[4 * ((j + 1) % 4) + j];
    const double mu = (double)v[0] + v[1] + v[2] + v[3];
    const int nt = pv_threads(n_threads);
    /* With a gradient and enough (topology, sample) pairs to keep every thread busy,
     * a task is one pair over all its blocks: it owns that pair's gradient rows and
     * sums them in a small local buffer. Otherwise (or when the plan says split_blocks:
     * see cpu_kernel.py's _plan) tasks split the patterns and each thread sums into a
     * copy of all rows, added up at the end. */
    const int owner = grad && !pl->split_blocks && (long)B * S >= 4L * nt;
    const long n_tasks = owner ? (long)B * S : (long)B * S * n_blocks;
    /* The pre-order pass needs every node's partials. An F81-family model keeps them (it
     * rebuilds the contributions from them); other models keep both contributions of
     * every node, and in float64 rebuild the partials from those instead, so that the
     * partials need only the reused buffers: that saves a third of the stores to memory
     * that does not stay in cache, which pays in float64 (5-10% less time with the
     * gradient) but not in float32 (5-10% more; measured on a 2-core AVX-512 EPYC).
     * Along directions (dirs) the pre-order pass reads no child's partials, only
     * contributions. */
    const int rebuild = grad && !f81 && sizeof(real) == 8;
    const int32_t *slot = grad && !rebuild && !dirs ? NULL : pl->slot;
    const long n_grad = grad ? (long)B * n_edges * S * C * 16 : 0;
    const long n_other = grad ? (long)B * S * 5 : 0;
    const long n_dir = scalar ? (long)B * n_edges * S * C : 0; /* tip edges' directional sums */
    int max_nodes = 0;
    for (int b = 0; b < B; b++)
        if (pl->topo_off[b + 1] - pl->topo_off[b] > max_nodes)
            max_nodes = pl->topo_off[b + 1] - pl->topo_off[b];
    /* one pair's rows: edges, the 5 others, then the tip edges' directional sums */
    const long n_pair = (long)n_edges * C * 16 + 5 + (scalar ? (long)n_edges * C : 0);
    const long per_thread = n_grad + n_other + n_dir;
    double *gacc = NULL;
    if (grad && !owner && !(gacc = (double *)calloc((size_t)nt * per_thread, sizeof(double))))
        return 1;
    const long node_sz = (long)C * 4 * blk;
    const double log_variable = log1p(-pinv), log_pinv = pinv > 0 ? log(pinv) : -INFINITY;
    /* the invariant part of a site: needed with +I, and for d lnL / d pinv at pinv = 0 */
    const int with_constant = pinv > 0 || jac_other != NULL;
    /* Without +I and with only the matrices differentiated, d ll / d mix is w / mix: no
     * shares, no pinv term (their divisions per pattern took 5% of a JC gradient) */
    const int mix_only = grad && !with_constant;
    /* Along Q for a reversible model in float32 (AVX-512 builds), the upper partials are
     * kept divided by pi ("z-form"): an internal child's 16 sums become 6 (grad_four_z_f32),
     * and the sums that remain (tips, roots of three) are contracted with diag(pi) Q
     * instead of Q. */
#if PV_FOUR_ROWS && PV_ZFORM
    int zf = 0;
    real piq[16];
    double wz[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (dirs) {
        double sym[16], big = 0;
        for (int q = 0; q < 16; q++) {
            sym[q] = (double)freq[q / 4] * gen[q];
            big = fmax(big, fabs(sym[q]));
        }
        zf = big > 0;
        for (int i = 0; i < 4; i++) { /* symmetric, rows summing to 0: else keep the m-form */
            double row = 0;
            for (int j = 0; j < 4; j++) {
                row += sym[4 * i + j];
                if (fabs(sym[4 * i + j] - sym[4 * j + i]) > 1e-4 * big) zf = 0;
            }
            if (fabs(row) > 1e-4 * big) zf = 0;
        }
        const int pi_[6] = {0, 0, 0, 1, 1, 2}, pj_[6] = {1, 2, 3, 2, 3, 3};
        for (int k = 0; k < 6; k++)
            wz[k] = -0.5 * (sym[4 * pi_[k] + pj_[k]] + sym[4 * pj_[k] + pi_[k]]);
        for (int q = 0; q < 16; q++) piq[q] = (real)sym[q];
    }
    const int zform = zf;
    const real *cgen = zform ? piq : gen; /* what the 16 sums are contracted with */
#else
    const int zform = 0;
    const real *cgen = gen;
#endif
    int failed = 0;
#pragma omp parallel num_threads(nt)
    {
        const unsigned int fp_mode = pv_flush_subnormals();
        double *G = grad && !owner ? gacc + (long)pv_thread_id() * per_thread : NULL;
        double *pair = owner ? (double *)malloc(sizeof(double) * (size_t)n_pair) : NULL;
        real *part = (real *)malloc(sizeof(real) * (size_t)(node_sz * max_nodes));
        real *scl = (real *)malloc(sizeof(real) * (size_t)(blk * max_nodes)); /* 1 / scale */
        unsigned char *rescaled = (unsigned char *)calloc((size_t)max_nodes, 1); /* any sc != 1 */
        real *upper = grad ? (real *)malloc(sizeof(real) * (size_t)(node_sz * max_nodes)) : NULL;
        real *work = (real *)malloc(sizeof(real) * (size_t)(28 * blk)); /* see the pre-order pass */
        real *contrib = (real *)malloc(sizeof(real) * (size_t)(node_sz * (2 * max_nodes + 1)));
        double *pd = (double *)malloc(sizeof(double) * (size_t)(3 * blk + C)); /* + mu q_c (f81dir) */
        if (!part || !scl || !rescaled || !work || !pd || !contrib || (grad && !upper) || (owner && !pair)) {
#pragma omp atomic write
            failed = 1;
        } else {
#pragma omp for schedule(dynamic, 1)
            for (long task = 0; task < n_tasks; task++) {
                /* block-major: consecutive tasks share a pattern block, so its tip
                 * planes stay in cache while the (topology, sample) pairs go by */
                const long bs = task % ((long)B * S);
                const int b = (int)(bs / S), s = (int)(bs % S);
                const int first_block = owner ? 0 : (int)(task / ((long)B * S));
                const int end_block = owner ? n_blocks : first_block + 1;
                /* gradient of edge row `edge`, category c: Ge + (edge - e0) * e_step + c * 16 */
                double *Ge = owner ? pair : G + (long)s * C * 16;
                const long e0 = owner ? (long)b * n_edges : 0, e_step = owner ? (long)C * 16 : (long)S * C * 16;
                double *other = !grad ? NULL : owner ? pair + (long)n_edges * C * 16 : G + n_grad + bs * 5;
                /* directional sum of tip edge `edge`, category c: Gt + (edge - e0) * t_step + c */
                double *Gt = !scalar ? NULL : owner ? other + 5 : G + n_grad + n_other + (long)s * C;
                const long t_step = owner ? C : (long)S * C;
                if (owner) memset(pair, 0, sizeof(double) * (size_t)n_pair);
                for (int kb = first_block; kb < end_block; kb++) {
                const int p0 = kb * blk;
                const int n = Pp - p0 < blk ? Pp - p0 : blk;
                const int pe = P - p0 < n ? P - p0 : n;
                const int first = pl->topo_off[b], last = pl->topo_off[b + 1];
                double *PV_RESTRICT prod = pd, *PV_RESTRICT lsum = pd + blk, *PV_RESTRICT ap = pd + 2 * blk;
                double *PV_RESTRICT mu_q = pd + 3 * blk; /* per category */
                for (int p = 0; p < n; p++) { prod[p] = 1.0; lsum[p] = 0.0; }
                /* Consecutive tasks take other trees, whose matrices (and gradient
                 * accumulators) are out of cache: ask for all of them at once, so the
                 * nodes do not wait on one miss after another. */
                for (long e = (long)b * n_edges; e < (long)(b + 1) * n_edges; e++)
                    for (int q = 0; q < C * 16; q += 8) {
                        __builtin_prefetch(mats + (e * S + s) * C * 16 + q, 0, 3);
                        if (grad && !owner) __builtin_prefetch(G + (e * S + s) * C * 16 + q, 1, 3);
                    }
                /* post-order; children's contributions kept in `contrib` */
                for (int node = first; node < last; node++) {
                    const int nch = pl->node_nch[node], local = node - first;
                    real *out = part + (slot ? slot[node] : local) * node_sz;
                    for (int c = 0; c < C; c++) {
                        long lx0, lx1;
                        const real *x0 = PV_FN(child_x)(pl, slot, node, first, 0, c, p0, tips, part, node_sz, blk, &lx0);
                        const real *x1 = PV_FN(child_x)(pl, slot, node, first, 1, c, p0, tips, part, node_sz, blk, &lx1);
                        const real *M0 = mats + (((long)pl->ch_edge[3 * node] * S + s) * C + c) * 16;
                        const real *M1 = mats + (((long)pl->ch_edge[3 * node + 1] * S + s) * C + c) * 16;
                        real *o = out + (long)c * 4 * blk;
                        /* both contributions (kept for the pre-order pass when it runs) and their product */
                        /* (an F81 node of two children rebuilds them in the pre-order pass instead) */
                        const int keep = grad && !(f81 && nch == 2);
                        real *PV_RESTRICT L = keep ? contrib + (2 * local) * node_sz + (long)c * 4 * blk : NULL;
                        real *PV_RESTRICT R = keep ? contrib + (2 * local + 1) * node_sz + (long)c * 4 * blk
                                                   : NULL;
#if PV_FOUR_ROWS
                        const uint8_t *cd0 = PV_FN(child_codes)(pl, codes, node, 0, p0);
                        const uint8_t *cd1 = PV_FN(child_codes)(pl, codes, node, 1, p0);
                        /* a tip's contribution is a table lookup, which the pre-order pass
                         * repeats rather than store it (except at the root: see kept_contribution) */
                        if (cd0) {
                            PV_FN(tip_node)(f81, n, M0, cd0, M1, x1, lx1, cd1, nch == 2 ? NULL : L,
                                            cd1 && nch == 2 ? NULL : R, o, blk);
                        } else if (cd1) {
                            PV_FN(tip_node)(f81, n, M1, cd1, M0, x0, lx0, NULL, nch == 2 ? NULL : R, L, o, blk);
                        } else
#endif
                        if (f81) {
                            PV_FN(f81_node)(n, M0, x0, lx0, M1, x1, lx1, L, R, o, blk);
                        } else {
                            PV_FN(general_node)(n, M0, x0, lx0, M1, x1, lx1, L ? L : work, R, o, blk);
                        }
                        if (nch == 3) {
                            long lx2;
                            const real *x2 = PV_FN(child_x)(pl, slot, node, first, 2, c, p0, tips, part, node_sz, blk, &lx2);
                            const real *M2 = mats + (((long)pl->ch_edge[3 * node + 2] * S + s) * C + c) * 16;
                            real *t = contrib + (2L * max_nodes) * node_sz + (long)c * 4 * blk;
#if PV_FOUR_ROWS
                            const uint8_t *cd2 = PV_FN(child_codes)(pl, codes, node, 2, p0);
                            if (cd2)
                                PV_FN(tip_contribution)(n, M2, cd2, t, blk);
                            else
#endif
                                PV_FN(product)(f81, n, M2, x2, lx2, t, blk);
#pragma omp simd
                            for (int q = 0; q < 4 * blk; q++) o[q] *= t[q];
                        }
                    }
                    /* 1 / scale; read only where rescaled[local] says it is not all 1 */
                    real *PV_RESTRICT sc = scl + (grad ? local : 0) * blk; /* only the gradient reads it back */
                    if (rescale) {
                        /* Rescale only the patterns whose largest partial fell below `low`;
                         * most nodes then need no pass. `low` leaves 30 (float32) and 200
                         * (float64) decades above underflow: one node shrinks its
                         * children's maxima by at most about the square of its smallest
                         * transition probability, which stays above 1e-15 for branch
                         * lengths above 1e-15 substitutions per site. Keep 1 / scale, so
                         * the passes multiply instead of divide. */
                        const real low = sizeof(real) == 4 ? (real)1e-8 : (real)PV_F64_RESCALE_BELOW;
#if PV_FOUR_ROWS
                        const int any = PV_FN(any_below)(n, out, blk, 4 * C, low);
                        if (any) PV_FN(pattern_maxima)(n, out, blk, 4 * C, sc);
#else
                        PV_FN(pattern_maxima)(n, out, blk, 4 * C, sc);
                        int any = 0;
                        for (int p = 0; p < n; p++) any |= sc[p] < low;
#endif
                        for (int p = 0; p < n && any; p++) {
                            const real m = sc[p];
                            if (m < low && m > 0) {
                                /* the scales' product, moved into the log sum before it
                                 * underflows: prod and m apart, as prod * m may be 0 */
                                double v = prod[p] * (double)m;
                                if (v < 1e-250) { lsum[p] += log(prod[p]) + log((double)m); v = 1.0; }
                                prod[p] = v;
                                sc[p] = (real)1 / m;
                            } else {
                                sc[p] = 1;
                            }
                        }
                        rescaled[local] = (unsigned char)any;
                        if (any) {
                            for (int q = 0; q < 4 * C; q++) {
                                real *PV_RESTRICT o = out + q * blk;
#pragma omp simd
                                for (int p = 0; p < n; p++) o[p] *= sc[p];
                            }
                        }
                    }
                }
                /* site log-likelihoods and d lnL / d (scaled site likelihood) */
                const real *root = part + (slot ? slot[last - 1] : last - 1 - first) * node_sz;
                double total = 0;
                for (int p = 0; p < pe; p++) {
                    double mix = 0, constant = 0;
                    for (int c = 0; c < C; c++) {
                        double site = 0;
                        for (int k = 0; k < 4; k++) site += (double)freq[k] * root[(c * 4 + k) * blk + p];
                        mix += (double)catw[c] * site;
                    }
                    if (with_constant)
                        for (int k = 0; k < 4; k++) constant += (double)freq[k] * inv[(long)k * Pp + p0 + p];
                    const double ls = prod[p] != 1.0 || lsum[p] != 0.0 ? lsum[p] + log(prod[p]) : 0.0;
                    const double lv = mix > 0 ? log_variable + log(mix) + ls : -INFINITY;
                    const double li = constant > 0 && pinv > 0 ? log_pinv + log(constant) : -INFINITY;
                    /* log(e^lv + e^li); without +I (li = -inf) it is lv, with no exp or log */
                    const double hi = lv > li ? lv : li, lo = lv > li ? li : lv;
                    const double e = lo == -INFINITY ? 0.0 : exp(lo - hi);
                    const double ll = e == 0.0 ? hi : hi + log1p(e);
                    const double w = weights[p0 + p];
                    total += w * ll;
                    if (site_ll) site_ll[bs * P + p0 + p] = (real)ll;
                    if (!grad) continue;
                    if (mix_only) { /* see mix_only: the divisions wait for one vector loop */
                        ap[p] = mix;
                        continue;
                    }
                    /* The shares of the variable and invariant parts in the site likelihood
                     * L = e^lv + e^li come from e, so the derivatives below need divisions
                     * only: d ll / d mix = share_v / mix, d ll / d pinv-part = share_i / constant. */
                    const double share_hi = 1.0 / (1.0 + e), share_lo = e * share_hi;
                    const double share_v = lv > li ? share_hi : share_lo;
                    const double share_i = lv > li ? share_lo : share_hi;
                    ap[p] = lv == -INFINITY ? 0.0 : w * share_v / mix;
                    const double to_invariant = li == -INFINITY ? 0.0 : w * share_i / constant;
                    for (int k = 0; k < 4; k++) other[k] += to_invariant * inv[(long)k * Pp + p0 + p];
                    /* d ll / d pinv = (constant - mix e^ls) / L */
                    double d_pinv = lv == -INFINITY ? 0.0 : -w * share_v / (1.0 - pinv);
                    if (li != -INFINITY)
                        d_pinv += w * share_i / pinv;
                    else if (constant > 0) /* pinv = 0: L = mix e^ls */
                        d_pinv += w * exp(log(constant) - ll);
                    other[4] += d_pinv;
                }
                lnl[bs * n_blocks + p0 / blk] = total;
                if (!grad) continue;
                if (mix_only) {
                    const real *PV_RESTRICT wp = weights + p0;
#pragma omp simd
                    for (int p = 0; p < pe; p++) ap[p] = ap[p] > 0 ? (double)wp[p] / ap[p] : 0.0;
                }
                for (int p = pe; p < n; p++) ap[p] = 0;
                /* pre-order */
                /* work: A, msg, xbuf, then the looked-up tip contributions (kept_contribution) */
                real *PV_RESTRICT msg = work + 4 * blk, *PV_RESTRICT xbuf = work + 8 * blk;
                real *looked_up = work + 12 * blk;
                for (int node = last - 1; node >= first; node--) {
                    const int nch = pl->node_nch[node], local = node - first, is_root = node == last - 1;
                    const real *PV_RESTRICT sc = scl + local * blk;
                    for (int c = 0; c < C; c++) {
                        const real *PV_RESTRICT A = work; /* upper * 1 / scale, all 4 planes */
                        if (is_root) {
                            mu_q[c] = 0;
                            for (int i = 0; i < 4; i++) {
                                const double f = (double)catw[c] * (zform ? 1.0 : (double)freq[i]);
                                real *PV_RESTRICT a = work + i * blk;
                                if (rescaled[local]) {
#pragma omp simd
                                    for (int p = 0; p < n; p++) a[p] = (real)(ap[p] * f) * sc[p];
                                } else {
#pragma omp simd
                                    for (int p = 0; p < n; p++) a[p] = (real)(ap[p] * f);
                                }
                                /* d lnL / d pi_i, and F81's q_c, need the root's partials' sums;
                                 * the branch lengths' gradient (dirs) needs neither */
                                if (!jac_other && !f81dir) continue;
                                const real *PV_RESTRICT r = root + (c * 4 + i) * blk;
                                double g = 0;
#pragma omp simd reduction(+ : g)
                                for (int p = 0; p < n; p++) g += ap[p] * r[p];
                                g *= catw[c];
                                other[i] += g;
                                mu_q[c] += mu * freq[i] * g; /* q_c = sum_p ap catw_c (pi . root_c) */
                            }
                        } else {
                            const real *PV_RESTRICT u = upper + pl->up_slot[node] * node_sz + (long)c * 4 * blk;
                            if (!rescaled[local]) {
                                A = u; /* its scale is 1: no copy */
                            } else {
                                for (int i = 0; i < 4; i++)
#pragma omp simd
                                    for (int p = 0; p < n; p++) work[i * blk + p] = u[i * blk + p] * sc[p];
                            }
                        }
                        const real *con[3] = {NULL, NULL, contrib + (2L * max_nodes) * node_sz + (long)c * 4 * blk};
                        if (f81dir && nch == 2) { /* both children in one sweep */
                            long l0, l1;
                            const real *x0 = PV_FN(child_x)(pl, slot, node, first, 0, c, p0, tips, part, node_sz, blk, &l0);
                            const real *x1 = PV_FN(child_x)(pl, slot, node, first, 1, c, p0, tips, part, node_sz, blk, &l1);
                            const int r0 = pl->ch_ref[3 * node], r1 = pl->ch_ref[3 * node + 1];
                            const long ed0 = pl->ch_edge[3 * node], ed1 = pl->ch_edge[3 * node + 1];
                            double sums[2] = {0, 0};
                            PV_FN(f81_dir_pair)(n, A, blk, mats + ((ed0 * S + s) * C + c) * 16, x0, l0,
                                                PV_FN(child_codes)(pl, codes, node, 0, p0),
                                                mats + ((ed1 * S + s) * C + c) * 16, x1, l1,
                                                PV_FN(child_codes)(pl, codes, node, 1, p0), v,
                                                r0 < 0 ? NULL : upper + pl->up_slot[r0] * node_sz + (long)c * 4 * blk,
                                                r1 < 0 ? NULL : upper + pl->up_slot[r1] * node_sz + (long)c * 4 * blk,
                                                sums);
                            Gt[(ed0 - e0) * t_step + c] += sums[0] - mu_q[c];
                            Gt[(ed1 - e0) * t_step + c] += sums[1] - mu_q[c];
                            continue;
                        }
                        /* Along Q (float64, or float32 in z-form), a tip sibling's contribution is
                         * looked up inside the child's step: a pass that looked it up into a buffer
                         * first cost about a tenth of the gradient (docs/performance.md). */
                        const int sib_lookup = PV_FOUR_ROWS && dirs && nch == 2 && (sizeof(real) == 8 || zform);
                        if (!(f81 && nch == 2)) /* (that path keeps no contributions) */
                            for (int k = 0; k < 2; k++)
                                con[k] = sib_lookup && PV_FN(child_codes)(pl, codes, node, k, p0) ? NULL
                                         : PV_FN(kept_contribution)(pl, codes, mats, s, node, first, k, c, p0, n, contrib,
                                                                    node_sz, looked_up + k * 4 * blk, blk);
                        for (int k = 0; k < nch; k++) {
                            const int ref = pl->ch_ref[3 * node + k];
                            const long edge = pl->ch_edge[3 * node + k];
                            long lx;
                            const real *x = PV_FN(child_x)(pl, slot, node, first, k, c, p0, tips, part, node_sz, blk, &lx);
                            const real *M = mats + ((edge * S + s) * C + c) * 16;
                            real *up = ref < 0 ? NULL : upper + pl->up_slot[ref] * node_sz + (long)c * 4 * blk;
                            if (f81 && nch == 2) {
                                long ly;
                                const real *y = PV_FN(child_x)(pl, slot, node, first, 1 - k, c, p0, tips, part, node_sz, blk, &ly);
                                const real *Ms = mats + (((long)pl->ch_edge[3 * node + 1 - k] * S + s) * C + c) * 16;
                                PV_FN(f81_backward_codes)(n, A, blk, Ms, y, ly,
                                                          PV_FN(child_codes)(pl, codes, node, 1 - k, p0),
                                                          M, x, lx, PV_FN(child_codes)(pl, codes, node, k, p0), up,
                                                          Ge + (edge - e0) * e_step + c * 16);
                                continue;
                            }
                            const real *x2 = NULL, *sx = NULL;
                            if (dirs) { /* the 16 sums over the child's contribution (see above) */
                                x = con[k];
                                lx = blk;
                            } else if (ref >= 0 && rebuild) { /* the child's two contributions (only roots have three) x its scale */
                                const int child = ref - first;
                                x = PV_FN(kept_contribution)(pl, codes, mats, s, ref, first, 0, c, p0, n, contrib,
                                                             node_sz, looked_up + 8 * blk, blk);
                                x2 = PV_FN(kept_contribution)(pl, codes, mats, s, ref, first, 1, c, p0, n, contrib,
                                                              node_sz, looked_up + 12 * blk, blk);
                                sx = rescaled[child] ? scl + child * blk : NULL;
                                lx = blk;
                            }
#if PV_FOUR_ROWS
                            const uint8_t *cdx = PV_FN(child_codes)(pl, codes, node, k, p0);
                            const uint8_t *cds = sib_lookup ? PV_FN(child_codes)(pl, codes, node, 1 - k, p0) : NULL;
                            if (cds) { /* a tip sibling, looked up in the step */
                                const real *Ms = mats + ((pl->ch_edge[3 * node + 1 - k] * S + s) * C + c) * 16;
                                double *gt = Gt + (edge - e0) * t_step + c;
                                if (cdx && sizeof(real) == 8) { /* both children tips: this one's direction */
                                    pv_grad_tip_dir_tip_sibling_pd(n, (const double *)A, blk, cds, (const double *)Ms, cdx,
                                                                   (const double *)M, (const double *)cgen, gt);
                                } else if (cdx) {
                                    pv_grad_tip_dir_tip_sibling_ps(n, (const float *)A, blk, cds, (const float *)Ms, cdx,
                                                                   (const float *)M, (const float *)cgen, gt);
                                } else if (sizeof(real) == 8) {
                                    const real Mt[16] = {M[0], M[4], M[8], M[12], M[1], M[5], M[9], M[13],
                                                         M[2], M[6], M[10], M[14], M[3], M[7], M[11], M[15]};
                                    grad_four_tip_sibling_f64(n, (const double *)A, blk, cds, (const double *)Ms,
                                                              (const double *)x, lx, Ge + (edge - e0) * e_step + c * 16,
                                                              (const double *)Mt, (double *)up);
                                } else { /* z-form: M as it is (see grad_four_z_f32) */
#if PV_ZFORM
                                    *gt += grad_four_z_tip_sibling_f32(n, (const float *)A, blk, cds, (const float *)Ms,
                                                                       (const float *)x, (const float *)M, (float *)up, wz);
#endif
                                }
                                continue;
                            }
                            if (cdx && nch == 2 && dirs) { /* a tip child, one direction */
                                double *gt = Gt + (edge - e0) * t_step + c;
                                if (sizeof(real) == 8)
                                    pv_grad_tip_dir_pd(n, (const double *)A, (const double *)con[1 - k], blk, cdx,
                                                       (const double *)M, (const double *)cgen, gt);
                                else
                                    pv_grad_tip_dir_ps(n, (const float *)A, (const float *)con[1 - k], blk, cdx,
                                                       (const float *)M, (const float *)cgen, gt);
                                continue;
                            }
#if PV_ZFORM
                            if (zform && nch == 2) { /* an internal child, along Q in z-form */
                                Gt[(edge - e0) * t_step + c] += grad_four_z_f32(n, A, con[1 - k], blk, x, M, up, wz);
                                continue;
                            }
#endif
                            if (cdx && nch == 2 && !f81) { /* a tip child: G from its codes */
                                double *Gk = Ge + (edge - e0) * e_step + c * 16;
                                if (sizeof(real) == 8)
                                    pv_grad_tip_pd(n, (const double *)A, (const double *)con[1 - k], blk, cdx, Gk);
                                else
                                    pv_grad_tip_ps(n, (const float *)A, (const float *)con[1 - k], blk, cdx, Gk);
                                continue;
                            }
#endif
                            if (f81dir) { /* a root of three: f81_dir_pair's sum from the column sums */
                                double Gk[16] = {0};
                                PV_FN(child_backward)(n, A, con[(k + 1) % nch], con[(k + 2) % nch], x, lx, NULL,
                                                      NULL, M, up, msg, xbuf, blk, f81, Gk);
                                double sum = -mu_q[c];
                                for (int q = 0; q < 16; q++) sum += (double)v[q % 4] * Gk[q];
                                Gt[(edge - e0) * t_step + c] += sum;
                                continue;
                            }
#if PV_ZFORM
                            /* in z-form the upper is P z, not P^T m: child_backward transposes M */
                            real Mz[16];
                            if (zform) {
                                for (int q = 0; q < 16; q++) Mz[q] = M[4 * (q % 4) + q / 4];
                                M = Mz;
                            }
#endif
                            PV_FN(child_backward)(n, A, con[(k + 1) % nch], nch == 3 ? con[(k + 2) % nch] : NULL,
                                                  x, lx, x2, sx, M, up, msg, xbuf, blk, f81,
                                                  Ge + (edge - e0) * e_step + c * 16);
                        }
                    }
                }
                } /* blocks */
                if (owner) { /* the pair's rows, straight into the outputs */
                    for (int e = 0; e < n_edges; e++) {
                        const long row = ((long)b * n_edges + e) * S + s;
                        if (scalar) {
                            double t = 0;
                            for (int c = 0; c < C; c++) {
                                const double *g = pair + ((long)e * C + c) * 16;
                                double v = Gt[(long)e * C + c];
                                for (int q = 0; q < 16; q++) v += g[q] * cgen[q];
                                t += rates[c] * v;
                            }
                            jac_times[bs * n_edges + e] = t;
                        } else {
                            for (int q = 0; q < C * 16; q++) jac_mats[row * C * 16 + q] = (real)pair[(long)e * C * 16 + q];
                        }
                    }
                    if (jac_other)
                        for (int k = 0; k < 5; k++) jac_other[bs * 5 + k] = (real)other[k];
                }
            }
        }
        free(pair);
        free(contrib);
        free(part);
        free(scl);
        free(rescaled);
        free(upper);
        free(work);
        free(pd);
        pv_restore_fp_mode(fp_mode);
    }
    if (grad && !owner && !failed && scalar) {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (long r = 0; r < (long)B * n_edges * S; r++) { /* row r = (topology, edge, sample) */
            double t = 0;
            for (int c = 0; c < C; c++) {
                const long q = r * C + c;
                double v = 0;
                for (int th = 0; th < nt; th++) {
                    const double *g = gacc + (long)th * per_thread;
                    v += g[n_grad + n_other + q];
                    for (int k = 0; k < 16; k++) v += g[q * 16 + k] * cgen[k];
                }
                t += rates[c] * v;
            }
            const long b = r / ((long)n_edges * S), e = r / S % n_edges, s = r % S;
            jac_times[(b * S + s) * n_edges + e] = t;
        }
    } else if (grad && !owner && !failed) {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (long q = 0; q < n_grad + n_other; q++) {
            double v = 0;
            for (int t = 0; t < nt; t++) v += gacc[(long)t * per_thread + q];
            if (q < n_grad) jac_mats[q] = (real)v;
            else jac_other[q - n_grad] = (real)v;
        }
    }
    free(gacc);
    return failed;
}

#undef real
#endif
