/* Time BEAGLE's CPU likelihood on inputs exported by benchmarks/likelihood.py.
 *
 *     beagle_peer INPUTS.bin REPEATS THREADS
 *
 * INPUTS.bin (little-endian, written by benchmarks/beagle_peer.py) holds
 *   int32  n_taxa, n_patterns, n_categories, n_ops, n_branches, n_samples, rescale
 *   double tips[n_taxa][n_patterns][4]        tip partials (ambiguity codes included)
 *   double weights[n_patterns]                pattern weights
 *   double rates[n_categories], category_weights[n_categories], frequencies[4]
 *   double left[4][4], right[4][4], eigenvalues[4]   P(t) = left diag(exp(eigenvalues t)) right
 *   double lengths[n_samples][n_branches]     branch index = child node id
 *   int32  ops[n_ops][3]                      post-order (node, left child, right child)
 *
 * Each evaluation recomputes every transition matrix, every internal partial
 * vector and the root log-likelihood. With rescale set, every partial vector
 * is rescaled (manual scaling, a scale buffer per internal node). Times REPEATS
 * passes over all samples (after one warm-up pass) and prints one JSON line:
 * the log-likelihood of sample 0, the median evaluations per second, and the
 * implementation and flags BEAGLE chose. No gradient: BEAGLE 3.1 has no
 * pre-order pass for all-branch derivatives.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libhmsbeagle/beagle.h"

static void fail(const char *what, int code) {
    fprintf(stderr, "beagle_peer: %s failed (%d)\n", what, code);
    exit(1);
}

#define CHECK(call) do { int _c = (call); if (_c < 0) fail(#call, _c); } while (0)

static void read_exact(FILE *f, void *buffer, size_t size, size_t count) {
    if (fread(buffer, size, count, f) != count) fail("reading the inputs", -1);
}

static double *read_doubles(FILE *f, size_t count) {
    double *out = malloc(count * sizeof(double));
    read_exact(f, out, sizeof(double), count);
    return out;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void describe_flags(long flags, char *out) {
    static const struct { long bit; const char *name; } names[] = {
        {BEAGLE_FLAG_PRECISION_SINGLE, "PRECISION_SINGLE"},
        {BEAGLE_FLAG_PRECISION_DOUBLE, "PRECISION_DOUBLE"},
        {BEAGLE_FLAG_COMPUTATION_SYNCH, "COMPUTATION_SYNCH"},
        {BEAGLE_FLAG_COMPUTATION_ASYNCH, "COMPUTATION_ASYNCH"},
        {BEAGLE_FLAG_EIGEN_REAL, "EIGEN_REAL"}, {BEAGLE_FLAG_EIGEN_COMPLEX, "EIGEN_COMPLEX"},
        {BEAGLE_FLAG_SCALING_MANUAL, "SCALING_MANUAL"}, {BEAGLE_FLAG_SCALING_AUTO, "SCALING_AUTO"},
        {BEAGLE_FLAG_SCALING_ALWAYS, "SCALING_ALWAYS"},
        {BEAGLE_FLAG_SCALING_DYNAMIC, "SCALING_DYNAMIC"},
        {BEAGLE_FLAG_SCALERS_RAW, "SCALERS_RAW"}, {BEAGLE_FLAG_SCALERS_LOG, "SCALERS_LOG"},
        {BEAGLE_FLAG_INVEVEC_STANDARD, "INVEVEC_STANDARD"},
        {BEAGLE_FLAG_INVEVEC_TRANSPOSED, "INVEVEC_TRANSPOSED"},
        {BEAGLE_FLAG_VECTOR_SSE, "VECTOR_SSE"}, {BEAGLE_FLAG_VECTOR_AVX, "VECTOR_AVX"},
        {BEAGLE_FLAG_VECTOR_NONE, "VECTOR_NONE"},
        {BEAGLE_FLAG_THREADING_CPP, "THREADING_CPP"},
        {BEAGLE_FLAG_THREADING_OPENMP, "THREADING_OPENMP"},
        {BEAGLE_FLAG_THREADING_NONE, "THREADING_NONE"},
        {BEAGLE_FLAG_PROCESSOR_CPU, "PROCESSOR_CPU"},
        {BEAGLE_FLAG_FRAMEWORK_CPU, "FRAMEWORK_CPU"},
    };
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (flags & names[i].bit) {
            if (out[0]) strcat(out, " ");
            strcat(out, names[i].name);
        }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s INPUTS.bin REPEATS THREADS\n", argv[0]);
        return 2;
    }
    int repeats = atoi(argv[2]), threads = atoi(argv[3]);
    FILE *f = fopen(argv[1], "rb");
    if (!f) fail("opening the inputs", -1);
    int header[7];
    read_exact(f, header, sizeof(int), 7);
    int n_taxa = header[0], n_patterns = header[1], n_categories = header[2], n_ops = header[3];
    int n_branches = header[4], n_samples = header[5], rescale = header[6];
    double *tips = read_doubles(f, (size_t)n_taxa * n_patterns * 4);
    double *weights = read_doubles(f, n_patterns);
    double *rates = read_doubles(f, n_categories);
    double *category_weights = read_doubles(f, n_categories);
    double *frequencies = read_doubles(f, 4);
    double *left = read_doubles(f, 16), *right = read_doubles(f, 16);
    double *eigenvalues = read_doubles(f, 4);
    double *lengths = read_doubles(f, (size_t)n_samples * n_branches);
    int *ops = malloc(sizeof(int) * 3 * n_ops);
    read_exact(f, ops, sizeof(int), 3 * (size_t)n_ops);
    fclose(f);

    int n_nodes = n_taxa + n_ops, root = ops[3 * (n_ops - 1)];
    BeagleInstanceDetails details;
    long requirements = BEAGLE_FLAG_PRECISION_DOUBLE | BEAGLE_FLAG_PROCESSOR_CPU
                        | BEAGLE_FLAG_VECTOR_SSE | BEAGLE_FLAG_SCALING_MANUAL;
    long preferences = requirements | BEAGLE_FLAG_THREADING_CPP | BEAGLE_FLAG_EIGEN_REAL
                       | BEAGLE_FLAG_INVEVEC_STANDARD;
    int instance = beagleCreateInstance(n_taxa, n_nodes, 0, 4, n_patterns, 1, n_branches,
                                        n_categories, n_ops + 1, NULL, 0, preferences,
                                        requirements, &details);
    if (instance < 0) fail("beagleCreateInstance", instance);
    if (details.flags & BEAGLE_FLAG_THREADING_CPP) CHECK(beagleSetCPUThreadCount(instance, threads));

    for (int t = 0; t < n_taxa; t++)
        CHECK(beagleSetTipPartials(instance, t, tips + (size_t)t * n_patterns * 4));
    CHECK(beagleSetPatternWeights(instance, weights));
    CHECK(beagleSetCategoryRates(instance, rates));
    CHECK(beagleSetCategoryWeights(instance, 0, category_weights));
    CHECK(beagleSetStateFrequencies(instance, 0, frequencies));
    CHECK(beagleSetEigenDecomposition(instance, 0, left, right, eigenvalues));

    BeagleOperation *operations = malloc(sizeof(BeagleOperation) * n_ops);
    int *scale_indices = malloc(sizeof(int) * n_ops);
    for (int i = 0; i < n_ops; i++) {
        int node = ops[3 * i], a = ops[3 * i + 1], b = ops[3 * i + 2];
        BeagleOperation op = {node, rescale ? i : BEAGLE_OP_NONE, BEAGLE_OP_NONE, a, a, b, b};
        operations[i] = op;
        scale_indices[i] = i;
    }
    int *matrix_indices = malloc(sizeof(int) * n_branches);
    for (int i = 0; i < n_branches; i++) matrix_indices[i] = i;
    int cumulative = rescale ? n_ops : BEAGLE_OP_NONE, zero = 0;

    double value = 0.0, *times = malloc(sizeof(double) * (repeats + 1));
    for (int pass = 0; pass <= repeats; pass++) {  /* pass 0 is the warm-up */
        double start = now();
        int calls = 0;
        do { /* each pass lasts >= 0.2 s, as likelihood.py's seconds_per_call */
            calls++;
            for (int s = 0; s < n_samples; s++) {
                double lnl;
                CHECK(beagleUpdateTransitionMatrices(instance, 0, matrix_indices, NULL, NULL,
                                                     lengths + (size_t)s * n_branches, n_branches));
                CHECK(beagleUpdatePartials(instance, operations, n_ops, BEAGLE_OP_NONE));
                if (rescale) {
                    CHECK(beagleResetScaleFactors(instance, cumulative));
                    CHECK(beagleAccumulateScaleFactors(instance, scale_indices, n_ops, cumulative));
                }
                CHECK(beagleCalculateRootLogLikelihoods(instance, &root, &zero, &zero, &cumulative,
                                                        1, &lnl));
                if (s == 0) value = lnl;
            }
        } while (now() - start < 0.2);
        times[pass] = (now() - start) / calls;
    }
    qsort(times + 1, repeats, sizeof(double), compare);
    double median = repeats % 2 ? times[1 + repeats / 2]
                                : 0.5 * (times[repeats / 2] + times[1 + repeats / 2]);
    char flags[1024];
    describe_flags(details.flags, flags);
    printf("{\"value\": %.17g, \"evals\": %.17g, \"details\": \"%s (%s) on %s, flags %s\"}\n",
           value, n_samples / median, details.implName, details.implDescription,
           details.resourceName, flags);
    beagleFinalizeInstance(instance);
    return 0;
}
