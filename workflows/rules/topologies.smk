rule vi:
    """Variational branch-length posterior of one topology, with its ELBO trace."""
    input:
        alignment=alignment_of,
        tree="results/{name}/topologies/t{rank}.nwk",
    output:
        summary="results/{name}/vi/t{rank}/summary.json",
        trace="results/{name}/vi/t{rank}/elbo.csv",
    params:
        folder=lambda wildcards, output: os.path.dirname(output.summary),
        # functions, so that Snakemake does not read a model's {values} as wildcards
        model=lambda wildcards: config["model"],
        prior=lambda wildcards: config["prior"],
        family=config["vi"]["family"],
        steps=config["vi"]["steps"],
        seed=config["seed"],
    conda:
        "../envs/phylovi.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        "logs/{name}/vi/t{rank}.log",
    benchmark:
        "benchmarks/{name}/vi/t{rank}.tsv"
    shell:
        "phylovi vi {input.alignment:q} {input.tree:q} --model {params.model:q} "
        "--prior {params.prior:q} --family {params.family} --steps {params.steps} "
        "--seed {params.seed} --threads {threads} -q -o {params.folder:q} > {log:q} 2>&1"


rule marginal:
    """The configured marginal-likelihood estimators on one topology."""
    input:
        alignment=alignment_of,
        tree="results/{name}/topologies/t{rank}.nwk",
    output:
        "results/{name}/marginal/t{rank}.json",
    params:
        methods=method_flags(),
        settings=setting_flags(),
        model=lambda wildcards: config["model"],
        prior=lambda wildcards: config["prior"],
        seed=config["seed"],
    conda:
        "../envs/phylovi.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=240,
    log:
        "logs/{name}/marginal/t{rank}.log",
    benchmark:
        "benchmarks/{name}/marginal/t{rank}.tsv"
    shell:
        "phylovi marginal {input.alignment:q} {input.tree:q} {params.methods} {params.settings} "
        "--model {params.model:q} --prior {params.prior:q} --seed {params.seed} "
        "--threads {threads} --json -q > {output:q}.part 2> {log:q} "
        "&& mv {output:q}.part {output:q}"


rule topology_posteriors:
    """One table per alignment: SBN probability, VI and every estimator's marginal
    likelihood, and the posterior each implies over the kept topologies."""
    input:
        credible="results/{name}/credible.tsv",
        marginal=lambda wildcards: expand("results/{{name}}/marginal/t{rank}.json",
                                          rank=topology_ranks(wildcards)),
        vi=lambda wildcards: expand("results/{{name}}/vi/t{rank}/summary.json",
                                    rank=topology_ranks(wildcards)),
    output:
        "results/{name}/topology_posteriors.tsv",
    conda:
        "../envs/phylovi.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        "logs/{name}/topology_posteriors.log",
    benchmark:
        "benchmarks/{name}/topology_posteriors.tsv"
    script:
        "../scripts/topology_posteriors.py"


rule likelihood_tests:
    """Maximum-likelihood branch lengths of the kept topologies, then the tree-topology
    tests on them (bp-RELL, KH, SH, ELW, AU; with a single topology, its lnL alone)."""
    input:
        alignment=alignment_of,
        trees=lambda wildcards: expand("results/{{name}}/topologies/t{rank}.nwk",
                                       rank=topology_ranks(wildcards)),
    output:
        ml="results/{name}/ml_trees.nwk",
        tests="results/{name}/topology_tests.tsv",
    params:
        model=lambda wildcards: config["model"],
        tests=lambda wildcards: "--tests 10000" if len(topology_ranks(wildcards)) > 1 else "",
        seed=config["seed"],
    conda:
        "../envs/phylovi.yaml"
    threads: THREADS
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        "logs/{name}/likelihood_tests.log",
    benchmark:
        "benchmarks/{name}/likelihood_tests.tsv"
    shell:
        "cat {input.trees:q} > {output.ml:q}.topologies "
        "&& phylovi loglik {input.alignment:q} {output.ml:q}.topologies --model {params.model:q} "
        "--optimize-lengths -o {output.ml:q} --threads {threads} -q > {log:q} 2>&1 "
        "&& rm {output.ml:q}.topologies "
        "&& phylovi loglik {input.alignment:q} {output.ml:q} --model {params.model:q} "
        "{params.tests} --seed {params.seed} --threads {threads} -q "
        "> {output.tests:q}.part 2>> {log:q} && mv {output.tests:q}.part {output.tests:q}"
