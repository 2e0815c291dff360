rule genotype_calls:
    """Exact perfect-phylogeny and linearity checks and the networks' branching and
    noise calls on one genotype matrix."""
    input:
        lambda wildcards: config["genotype"]["matrices"][wildcards.matrix],
    output:
        check="results/genotype/{matrix}/check.json",
        branching="results/genotype/{matrix}/branching.json",
        noise="results/genotype/{matrix}/noise.json",
    conda:
        "../envs/phylovi.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/genotype/{matrix}.log",
    benchmark:
        "benchmarks/genotype/{matrix}.tsv"
    shell:
        "(phylovi genotype check {input:q} --json > {output.check:q}.part "
        "&& phylovi genotype predict {input:q} --task branching --json > {output.branching:q}.part "
        "&& phylovi genotype predict {input:q} --task noise --json > {output.noise:q}.part) "
        "2> {log:q} && mv {output.check:q}.part {output.check:q} "
        "&& mv {output.branching:q}.part {output.branching:q} "
        "&& mv {output.noise:q}.part {output.noise:q}"


rule genotype_table:
    """One row per matrix: size, exact checks and network calls."""
    input:
        check=expand("results/genotype/{matrix}/check.json", matrix=MATRICES),
        branching=expand("results/genotype/{matrix}/branching.json", matrix=MATRICES),
        noise=expand("results/genotype/{matrix}/noise.json", matrix=MATRICES),
    output:
        "results/genotype/calls.tsv",
    params:
        names=MATRICES,
    conda:
        "../envs/phylovi.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        "logs/genotype/calls.log",
    benchmark:
        "benchmarks/genotype/calls.tsv"
    script:
        "../scripts/genotype_table.py"
