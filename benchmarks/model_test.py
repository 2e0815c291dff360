"""`phylovi loglik -m TEST` against IQ-TREE's ModelFinder on the same fixed topology.

IQ-TREE 2: ``iqtree2 -s ALN -te TREE -m TESTONLY -mset JC,F81,K2P,HKY,TN,SYM,GTR
-mrate E,I,G,I+G -nt 1 -keep-ident``; phylovi: ``phylovi loglik ALN TREE -m TEST --json``
on one thread and on torch's default. For each data set: whole-command wall times
(medians of ``--repeats`` runs), whether the two pick the same model by BIC, and how
the 28 maxima compare (phylovi's minus IQ-TREE's, which prints 3 decimals). Prints a
Markdown table.

    .venv/bin/python benchmarks/model_test.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from optimize import DATA  # the data sets of the fits' benchmark


def timed(argv: list[str], **kwargs) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - start, result.stdout


def iqtree_table(log: Path) -> dict[str, tuple[float, int]]:
    """ModelFinder's rows in IQ-TREE's log: model -> (lnL, df)."""
    rows = {}
    for line in log.read_text().splitlines():
        words = line.split()
        if len(words) == 7 and words[0].isdigit():
            try:
                rows[words[1]] = (-float(words[2]), int(words[3]))
            except ValueError:
                continue
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["example", "sim27"], choices=list(DATA))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iqtree", default=shutil.which("iqtree2") or "iqtree2")
    args = parser.parse_args()
    phylovi = [sys.executable, "-m", "phylovi", "loglik"]
    print("| data | IQ-TREE s (1 thread) | phylovi s (1 thread) | phylovi s (default threads) "
          "| best by BIC, IQ-TREE | best by BIC, phylovi | phylovi - IQ-TREE lnL, min | max "
          "| df equal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.data:
        alignment, tree = f"{DATA[name]}.fasta", f"{DATA[name]}.nwk"
        with tempfile.TemporaryDirectory() as tmp:
            prefix = Path(tmp) / "mf"
            iqtree = [args.iqtree, "-s", alignment, "-te", tree, "-m", "TESTONLY", "-mset",
                      "JC,F81,K2P,HKY,TN,SYM,GTR", "-mrate", "E,I,G,I+G", "-nt", "1",
                      "-keep-ident", "-redo", "-pre", str(prefix)]
            times = {"iqtree": [], "one": [], "default": []}
            for _ in range(args.repeats):
                times["iqtree"].append(timed(iqtree)[0])
                seconds, out = timed(phylovi + [alignment, tree, "-m", "TEST", "--json", "-q",
                                                "--threads", "1"])
                times["one"].append(seconds)
                times["default"].append(timed(phylovi + [alignment, tree, "-m", "TEST",
                                                         "--json", "-q"])[0])
            theirs = iqtree_table(Path(f"{prefix}.log"))
            best_theirs = next(line.split(":")[1].split()[0]
                               for line in Path(f"{prefix}.iqtree").read_text().splitlines()
                               if line.startswith("Best-fit model according to BIC"))
        record = json.loads(out)
        ours = {fit["name"]: fit for fit in record["models"]}
        gaps = [ours[model]["log_likelihood"] - value for model, (value, _) in theirs.items()]
        same_df = all(ours[model]["df"] == df for model, (_, df) in theirs.items())
        median = {key: statistics.median(values) for key, values in times.items()}
        print(f"| {name} | {median['iqtree']:.2f} | {median['one']:.2f} | "
              f"{median['default']:.2f} | {best_theirs} | {record['best']['bic']} | "
              f"{min(gaps):+.4f} | {max(gaps):+.4f} | {same_df and len(theirs) == 28} |",
              flush=True)


if __name__ == "__main__":
    main()
