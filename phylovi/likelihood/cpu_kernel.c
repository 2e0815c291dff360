/* Fused CPU tree-likelihood kernel for phylovi (see phylovi/likelihood/cpu_kernel.py).
 *
 * Plain C99 + OpenMP, loaded with ctypes. The file includes itself (by name) twice to
 * define a float64 (suffix _f64) and a float32 (suffix _f32) variant.
 *
 * Work is split into tasks (topology b, sample s, block of patterns); a task runs
 * its topology's whole post-order pass, the site log-likelihoods and, for the
 * gradient, the pre-order pass, on per-thread scratch that holds only its block.
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

typedef struct {
    int n_topologies, n_samples, n_categories, n_patterns, n_padded, block;
    const int32_t *topo_off, *node_nch, *ch_ref, *ch_edge;
} pv_plan;

static int pv_threads(int n)
{
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
    return omp_get_max_threads();
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

int pv_version(void) { return 3; }

#define PV_REAL double
#define PV_FN(name) name##_f64
#include "cpu_kernel.c"
#undef PV_REAL
#undef PV_FN
#define PV_REAL float
#define PV_FN(name) name##_f32
#include "cpu_kernel.c"
#undef PV_REAL
#undef PV_FN

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
    PV_FN(grad_rows)(n, m, m + lm, x, lx, G);
    PV_FN(grad_rows)(n, m + 2 * lm, m + 3 * lm, x, lx, G + 8);
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

/* out (4 planes, stride ld) = M @ x, in two sweeps of two rows. */
static inline void PV_FN(contribution)(int n, const real *M, const real *x, long lx, real *out,
                                       long ld)
{
    PV_FN(two_rows)(n, M, x, lx, out, out + ld);
    PV_FN(two_rows)(n, M + 8, x, lx, out + 2 * ld, out + 3 * ld);
}

/* Where child k of a node keeps its partials for category c: the tip planes, or the
 * task's scratch `part`; sets *lx to the plane stride. */
static inline const real *PV_FN(child_x)(const pv_plan *pl, int node, int first, int k, int c,
                                         int p0, const real *tips, const real *part,
                                         long node_sz, int blk, long *lx)
{
    const int ref = pl->ch_ref[3 * node + k];
    if (ref < 0) {
        *lx = pl->n_padded;
        return tips + (long)(-ref - 1) * 4 * pl->n_padded + p0;
    }
    *lx = blk;
    return part + (ref - first) * node_sz + (long)c * 4 * blk;
}

/* The pre-order step to one child: message m = upper * sibling (4 planes), then
 * G += m (x) x and, for an internal child, its upper = m @ P. */
static inline void PV_FN(child_backward)(int n, const real *PV_RESTRICT A,
                                         const real *PV_RESTRICT sib1, const real *PV_RESTRICT sib2,
                                         const real *PV_RESTRICT x, long lx, const real *M,
                                         real *PV_RESTRICT up, real *PV_RESTRICT msg, int blk,
                                         double *G)
{
    if (sib2) {
#pragma omp simd
        for (int q = 0; q < 4 * blk; q++) msg[q] = A[q] * sib1[q] * sib2[q];
    } else {
#pragma omp simd
        for (int q = 0; q < 4 * blk; q++) msg[q] = A[q] * sib1[q];
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
 *   jac_mats [B*n_edges][S][C][16], jac_other [B][S][5] (d/d frequencies, d/d pinv) out. */
int PV_FN(pv_loglik)(const pv_plan *pl, int n_edges, const real *mats, const real *tips,
                     const real *freq, const real *catw, double pinv, const real *weights,
                     const real *inv, int rescale, double *lnl, real *site_ll,
                     real *jac_mats, real *jac_other, int n_threads)
{
    const int S = pl->n_samples, C = pl->n_categories, P = pl->n_patterns, Pp = pl->n_padded;
    const int blk = pl->block, B = pl->n_topologies;
    const int n_blocks = (Pp + blk - 1) / blk;
    const long n_tasks = (long)B * S * n_blocks;
    const int grad = jac_mats != NULL;
    const long n_grad = grad ? (long)B * n_edges * S * C * 16 : 0;
    const long n_other = grad ? (long)B * S * 5 : 0;
    int max_nodes = 0;
    for (int b = 0; b < B; b++)
        if (pl->topo_off[b + 1] - pl->topo_off[b] > max_nodes)
            max_nodes = pl->topo_off[b + 1] - pl->topo_off[b];
    const int nt = pv_threads(n_threads);
    double *gacc = NULL;
    if (grad && !(gacc = (double *)calloc((size_t)nt * (n_grad + n_other), sizeof(double))))
        return 1;
    const long node_sz = (long)C * 4 * blk;
    const double log_variable = log1p(-pinv), log_pinv = pinv > 0 ? log(pinv) : -INFINITY;
    int failed = 0;
#pragma omp parallel num_threads(nt)
    {
        double *G = grad ? gacc + (long)pv_thread_id() * (n_grad + n_other) : NULL;
        real *part = (real *)malloc(sizeof(real) * (size_t)(node_sz * max_nodes));
        real *scl = (real *)malloc(sizeof(real) * (size_t)(blk * max_nodes)); /* 1 / scale */
        real *upper = grad ? (real *)malloc(sizeof(real) * (size_t)(node_sz * max_nodes)) : NULL;
        real *work = (real *)malloc(sizeof(real) * (size_t)(8 * blk));
        real *contrib = (real *)malloc(sizeof(real) * (size_t)(node_sz * (2 * max_nodes + 1)));
        double *pd = (double *)malloc(sizeof(double) * (size_t)(3 * blk));
        if (!part || !scl || !work || !pd || !contrib || (grad && !upper)) {
#pragma omp atomic write
            failed = 1;
        } else {
#pragma omp for schedule(dynamic, 1)
            for (long task = 0; task < n_tasks; task++) {
                const long bs = task / n_blocks;
                const int b = (int)(bs / S), s = (int)(bs % S);
                const int p0 = (int)(task % n_blocks) * blk;
                const int n = Pp - p0 < blk ? Pp - p0 : blk;
                const int pe = P - p0 < n ? P - p0 : n;
                const int first = pl->topo_off[b], last = pl->topo_off[b + 1];
                double *PV_RESTRICT prod = pd, *PV_RESTRICT lsum = pd + blk, *PV_RESTRICT ap = pd + 2 * blk;
                for (int p = 0; p < n; p++) { prod[p] = 1.0; lsum[p] = 0.0; }
                /* post-order; children's contributions kept in `contrib` */
                for (int node = first; node < last; node++) {
                    const int nch = pl->node_nch[node], local = node - first;
                    real *out = part + local * node_sz;
                    for (int c = 0; c < C; c++) {
                        long lx0, lx1;
                        const real *x0 = PV_FN(child_x)(pl, node, first, 0, c, p0, tips, part, node_sz, blk, &lx0);
                        const real *x1 = PV_FN(child_x)(pl, node, first, 1, c, p0, tips, part, node_sz, blk, &lx1);
                        const real *M0 = mats + (((long)pl->ch_edge[3 * node] * S + s) * C + c) * 16;
                        const real *M1 = mats + (((long)pl->ch_edge[3 * node + 1] * S + s) * C + c) * 16;
                        real *o = out + (long)c * 4 * blk;
                        /* both contributions (kept for the pre-order pass when it runs), then their product */
                        real *PV_RESTRICT L = grad ? contrib + (2 * local) * node_sz + (long)c * 4 * blk : work;
                        real *PV_RESTRICT R = grad ? contrib + (2 * local + 1) * node_sz + (long)c * 4 * blk
                                                   : work + 4 * blk;
                        PV_FN(contribution)(n, M0, x0, lx0, L, blk);
                        PV_FN(contribution)(n, M1, x1, lx1, R, blk);
#pragma omp simd
                        for (int q = 0; q < 4 * blk; q++) o[q] = L[q] * R[q];
                        if (nch == 3) {
                            long lx2;
                            const real *x2 = PV_FN(child_x)(pl, node, first, 2, c, p0, tips, part, node_sz, blk, &lx2);
                            const real *M2 = mats + (((long)pl->ch_edge[3 * node + 2] * S + s) * C + c) * 16;
                            real *t = contrib + (2L * max_nodes) * node_sz + (long)c * 4 * blk;
                            PV_FN(contribution)(n, M2, x2, lx2, t, blk);
#pragma omp simd
                            for (int q = 0; q < 4 * blk; q++) o[q] *= t[q];
                        }
                    }
                    real *PV_RESTRICT sc = scl + (node - first) * blk;
                    if (rescale) {
                        for (int p = 0; p < n; p++) sc[p] = 0;
                        for (int q = 0; q < 4 * C; q++) {
                            const real *PV_RESTRICT o = out + q * blk;
#pragma omp simd
                            for (int p = 0; p < n; p++) sc[p] = o[p] > sc[p] ? o[p] : sc[p];
                        }
                        /* Rescale only the patterns whose largest partial fell below `low`;
                         * most nodes then need no pass. `low` leaves 30 (float32) and 200
                         * (float64) decades above underflow: one node shrinks its
                         * children's maxima by at most about the square of its smallest
                         * transition probability, which stays above 1e-15 for branch
                         * lengths above 1e-15 substitutions per site. Keep 1 / scale, so
                         * the passes multiply instead of divide. */
                        const real low = sizeof(real) == 4 ? (real)1e-8 : (real)1e-100;
                        int any = 0;
                        for (int p = 0; p < n; p++) any |= sc[p] < low;
                        for (int p = 0; p < n && any; p++) {
                            const real m = sc[p];
                            if (m < low && m > 0) {
                                double v = prod[p] * (double)m;
                                if (v < 1e-250) { lsum[p] += log(v); v = 1.0; }
                                prod[p] = v;
                                sc[p] = (real)1 / m;
                            } else {
                                sc[p] = 1;
                            }
                        }
                        if (any) {
                            for (int q = 0; q < 4 * C; q++) {
                                real *PV_RESTRICT o = out + q * blk;
#pragma omp simd
                                for (int p = 0; p < n; p++) o[p] *= sc[p];
                            }
                        } else {
                            for (int p = 0; p < n; p++) sc[p] = 1;
                        }
                    } else {
                        for (int p = 0; p < n; p++) sc[p] = 1;
                    }
                }
                /* site log-likelihoods and d lnL / d (scaled site likelihood) */
                const real *root = part + (last - 1 - first) * node_sz;
                double total = 0, *other = grad ? G + n_grad + bs * 5 : NULL;
                for (int p = 0; p < pe; p++) {
                    double mix = 0, constant = 0;
                    for (int c = 0; c < C; c++) {
                        double site = 0;
                        for (int k = 0; k < 4; k++) site += (double)freq[k] * root[(c * 4 + k) * blk + p];
                        mix += (double)catw[c] * site;
                    }
                    for (int k = 0; k < 4; k++) constant += (double)freq[k] * inv[(long)k * Pp + p0 + p];
                    const double ls = rescale ? lsum[p] + log(prod[p]) : 0.0;
                    const double lv = mix > 0 ? log_variable + log(mix) + ls : -INFINITY;
                    const double li = constant > 0 ? log_pinv + log(constant) : -INFINITY;
                    const double hi = lv > li ? lv : li;
                    const double ll = hi == -INFINITY ? -INFINITY : hi + log(exp(lv - hi) + exp(li - hi));
                    const double w = weights[p0 + p];
                    total += w * ll;
                    if (site_ll) site_ll[bs * P + p0 + p] = (real)ll;
                    if (!grad) continue;
                    ap[p] = lv == -INFINITY ? 0.0 : w * exp(log_variable + ls - ll);
                    const double to_invariant = li == -INFINITY ? 0.0 : w * exp(log_pinv - ll);
                    for (int k = 0; k < 4; k++) other[k] += to_invariant * inv[(long)k * Pp + p0 + p];
                    other[4] += (constant > 0 ? w * exp(log(constant) - ll) : 0.0)
                                - (lv == -INFINITY ? 0.0 : w * exp(log(mix) + ls - ll));
                }
                lnl[task] = total;
                if (!grad) continue;
                for (int p = pe; p < n; p++) ap[p] = 0;
                /* pre-order */
                real *PV_RESTRICT A = work, *PV_RESTRICT msg = work + 4 * blk;
                for (int node = last - 1; node >= first; node--) {
                    const int nch = pl->node_nch[node], local = node - first, is_root = node == last - 1;
                    const real *PV_RESTRICT sc = scl + local * blk;
                    for (int c = 0; c < C; c++) {
                        if (is_root) {
                            for (int i = 0; i < 4; i++) {
                                double g = 0;
                                const real *PV_RESTRICT r = root + (c * 4 + i) * blk;
                                const double f = (double)catw[c] * freq[i];
                                for (int p = 0; p < n; p++) {
                                    A[i * blk + p] = (real)(ap[p] * f) * sc[p];
                                    g += ap[p] * catw[c] * r[p];
                                }
                                other[i] += g;
                            }
                        } else {
                            const real *PV_RESTRICT u = upper + local * node_sz + (long)c * 4 * blk;
                            for (int i = 0; i < 4; i++)
#pragma omp simd
                                for (int p = 0; p < n; p++) A[i * blk + p] = u[i * blk + p] * sc[p];
                        }
                        const real *con[3] = {
                            contrib + (2 * local) * node_sz + (long)c * 4 * blk,
                            contrib + (2 * local + 1) * node_sz + (long)c * 4 * blk,
                            contrib + (2L * max_nodes) * node_sz + (long)c * 4 * blk};
                        for (int k = 0; k < nch; k++) {
                            const int ref = pl->ch_ref[3 * node + k];
                            const long edge = pl->ch_edge[3 * node + k];
                            long lx;
                            const real *x = PV_FN(child_x)(pl, node, first, k, c, p0, tips, part, node_sz, blk, &lx);
                            const real *M = mats + ((edge * S + s) * C + c) * 16;
                            real *up = ref < 0 ? NULL : upper + (ref - first) * node_sz + (long)c * 4 * blk;
                            PV_FN(child_backward)(n, A, con[(k + 1) % nch], nch == 3 ? con[(k + 2) % nch] : NULL,
                                                  x, lx, M, up, msg, blk, G + ((edge * S + s) * C + c) * 16);
                        }
                    }
                }
            }
        }
        free(contrib);
        free(part);
        free(scl);
        free(upper);
        free(work);
        free(pd);
    }
    if (grad && !failed) {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (long q = 0; q < n_grad + n_other; q++) {
            double v = 0;
            for (int t = 0; t < nt; t++) v += gacc[(long)t * (n_grad + n_other) + q];
            if (q < n_grad) jac_mats[q] = (real)v;
            else jac_other[q - n_grad] = (real)v;
        }
    }
    free(gacc);
    return failed;
}

#undef real
#endif
