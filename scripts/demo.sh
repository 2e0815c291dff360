#!/usr/bin/env bash
# Set up (scripts/setup.sh) and compute the log-likelihood of the bundled example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/phylovi loglik data/example.fasta data/example.nwk \
    --model "GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}" "$@"
