rule sbn_fit:
    """Fit a topology posterior (SBN or a baseline) to the alignment's tree samples."""
    input:
        trees=lambda wildcards: config["alignments"][wildcards.name]["trees"],
    output:
        "results/{name}/sbn.json",
    params:
        method=config["sbn"]["method"],
        burnin=lambda wildcards: config["alignments"][wildcards.name].get("burnin", 0.0),
    conda:
        "../envs/phylovi.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "logs/{name}/sbn_fit.log",
    benchmark:
        "benchmarks/{name}/sbn_fit.tsv"
    shell:
        "phylovi sbn fit {input.trees:q} --method {params.method} --burnin {params.burnin} "
        "-o {output:q} > {log:q} 2>&1"


rule split_support:
    """Support of every non-trivial split under the fitted posterior."""
    input:
        "results/{name}/sbn.json",
    output:
        "results/{name}/splits.tsv",
    conda:
        "../envs/phylovi.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        "logs/{name}/split_support.log",
    benchmark:
        "benchmarks/{name}/split_support.tsv"
    shell:
        "phylovi sbn query {input:q} --splits > {output:q}.part 2> {log:q} "
        "&& mv {output:q}.part {output:q}"


checkpoint credible_set:
    """The credible set, and one Newick file per topology for the first max_topologies."""
    input:
        "results/{name}/sbn.json",
    output:
        table="results/{name}/credible.tsv",
        topologies=directory("results/{name}/topologies"),
    params:
        level=config["sbn"]["credible"],
        cap=config["sbn"]["max_topologies"],
    conda:
        "../envs/phylovi.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        "logs/{name}/credible_set.log",
    benchmark:
        "benchmarks/{name}/credible_set.tsv"
    shell:
        "phylovi sbn query {input:q} --credible {params.level} > {output.table:q}.part "
        "2> {log:q} && mv {output.table:q}.part {output.table:q} "
        "&& mkdir -p {output.topologies:q} "
        # Columns: rank, probability, cumulative, newick (header first).
        "&& (cd {output.topologies:q} && awk -F '\\t' -v cap={params.cap} "
        "'NR > 1 && NR <= cap + 1 {{ print $4 > (\"t\" $1 \".nwk\") }}') < {output.table:q}"
