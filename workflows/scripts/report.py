"""The workflow's report: Markdown with PNG plots beside it in results/report/.

Per alignment: the topology posteriors table, split support (bar plot),
ELBO traces of the VI fits, each estimator's log marginal likelihood per
topology (the estimator comparison), and the likelihood tests at the topologies'
maximum-likelihood branch lengths. Then the genotype calls, if any.
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_tsv(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def read_csv(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def split_plot(splits: list[dict], path: Path, name: str) -> None:
    figure, axes = plt.subplots(figsize=(7, 0.3 * len(splits) + 1.2))
    labels = [row["taxa"] for row in splits][::-1]
    axes.barh(labels, [float(row["support"]) for row in splits][::-1], color="tab:blue")
    axes.set_xlim(0, 1)
    axes.set_xlabel("posterior support")
    axes.set_title(f"{name}: split support (SBN)")
    save(figure, path)


def elbo_plot(traces: dict[str, list[dict]], path: Path, name: str) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    for label, rows in traces.items():
        steps = [float(row["step"]) for row in rows]
        axes.plot(steps, [float(row["bound"]) for row in rows], label=label)
    axes.set_xlabel("step")
    axes.set_ylabel("ELBO")
    axes.set_title(f"{name}: VI ELBO traces")
    axes.legend(fontsize="small")
    save(figure, path)


def estimator_plot(posteriors: list[dict], path: Path, name: str) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    columns = [c for c in posteriors[0] if c.endswith("_log_ml")]
    ranks = [int(row["rank"]) for row in posteriors]
    for k, column in enumerate(columns):
        offset = (k - (len(columns) - 1) / 2) * 0.08
        axes.plot([r + offset for r in ranks], [float(row[column]) for row in posteriors], "o",
                  label=column.removesuffix("_log_ml"))
    axes.set_xticks(ranks)
    axes.set_xlabel("topology (credible-set rank)")
    axes.set_ylabel("log marginal likelihood")
    axes.set_title(f"{name}: estimators per topology")
    axes.legend(fontsize="small")
    save(figure, path)


def tests_section(path) -> list[str]:
    """`phylovi loglik --tests`'s table, or the one topology's lnL (no test with one)."""
    text = Path(path).read_text().strip()
    lines = ["### Likelihood tests", "",
             "At each topology's maximum-likelihood branch lengths (`phylovi loglik "
             "--optimize-lengths`, then `--tests`: RELL bp, KH, SH, ELW and AU; a p-value "
             "below 0.05 rejects the topology):", ""]
    if not text.startswith("tree\t"):
        return lines[:2] + [f"One topology kept: its maximum log-likelihood is {text}.", ""]
    rows = read_tsv(path)
    for row in rows:
        row["tree"] = f"rank {row['tree']}"
    return lines + [markdown_table(rows, list(rows[0])), ""]


def main(names, posterior_files, split_files, test_files, genotype_file, output: str) -> None:
    output = Path(output)
    figures = output.parent / "report"
    figures.mkdir(parents=True, exist_ok=True)
    lines = ["# phylovi workflow report", ""]
    for name, posterior_file, split_file, test_file in zip(names, posterior_files, split_files,
                                                            test_files):
        posteriors, splits = read_tsv(posterior_file), read_tsv(split_file)
        best = max(posteriors, key=lambda row: float(row["posterior_vi"]))
        lines += [f"## {name}", "",
                  f"Highest marginal likelihood (VI importance sampling): rank {best['rank']}, "
                  f"`{best['newick']}`.", "",
                  "Topology posteriors over the kept credible-set topologies "
                  "(`posterior_*`: uniform topology prior, normalised over these topologies):",
                  "", markdown_table(posteriors, list(posteriors[0])), ""]
        split_plot(splits, figures / f"{name}_splits.png", name)
        lines += ["### Split support", "", f"![split support](report/{name}_splits.png)", "",
                  markdown_table(splits, ["support", "taxa"]), ""]
        traces = {}
        for row in posteriors:
            trace = Path(posterior_file).parent / "vi" / f"t{row['rank']}" / "elbo.csv"
            traces[f"rank {row['rank']}"] = read_csv(trace)
        elbo_plot(traces, figures / f"{name}_elbo.png", name)
        estimator_plot(posteriors, figures / f"{name}_estimators.png", name)
        lines += ["### VI and estimators", "", f"![ELBO traces](report/{name}_elbo.png)", "",
                  f"![estimators](report/{name}_estimators.png)", ""]
        lines += tests_section(test_file)
    if genotype_file:
        calls = read_tsv(genotype_file)
        lines += ["## Genotype matrices", "",
                  "Exact checks (missing read as 0) and the shipped networks' calls.", "",
                  markdown_table(calls, list(calls[0])), ""]
    output.write_text("\n".join(lines))


# Run by Snakemake (rule report), which defines `snakemake`.
sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
main(snakemake.params.names, snakemake.input.posteriors, snakemake.input.splits,  # noqa: F821
     snakemake.input.tests, snakemake.input.genotype or None, snakemake.output[0])  # noqa: F821
