from types import SimpleNamespace


rule report:
    """Markdown report with plots: split support, ELBO traces, estimator comparison,
    topology posteriors, likelihood tests and genotype calls."""
    input:
        posteriors=expand("results/{name}/topology_posteriors.tsv", name=ALIGNMENTS),
        splits=expand("results/{name}/splits.tsv", name=ALIGNMENTS),
        tests=expand("results/{name}/topology_tests.tsv", name=ALIGNMENTS),
        genotype="results/genotype/calls.tsv" if MATRICES else [],
        # the ELBO traces it plots, so that a missing one is rebuilt, not a crash
        traces=lambda wildcards: [
            f"results/{name}/vi/t{rank}/elbo.csv"
            for name in ALIGNMENTS
            for rank in topology_ranks(SimpleNamespace(name=name))],
    output:
        "results/report.md",
    params:
        names=ALIGNMENTS,
    conda:
        "../envs/phylovi.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    script:
        "../scripts/report.py"
