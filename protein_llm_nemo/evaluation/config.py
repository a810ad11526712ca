"""What an evaluation run is: the model, the records, how completions are sampled, the baselines.

`protein-llm eval` (flags) and `nemo-run recipes/eval.py` (sections: ``data.test_path=``,
``generation.samples=``) fill the same dataclasses. Everything that changes a completion is in
`EvalGenerationConfig` plus the model; a resumed run must agree with the first on both (the runner checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BASELINES", "EvalConfig", "EvalDataConfig", "EvalGenerationConfig"]

BASELINES = ("naive", "homology")


@dataclass
class EvalDataConfig:
    """test_path:         records to evaluate (JSONL or Arrow, `protein-llm data split`'s test.jsonl);
    train_path:        training records: the baselines' knowledge and the GO information accretion;
    go_obo:            the Gene Ontology the GO records were built with (else $PROTEIN_LLM_GO_OBO);
    limit:             evaluate the first `limit` usable records only (a quick look, the demo);
    tasks:             comma-separated tasks to keep (default: every task of the file);
    micro_batch_size:  prompts per prefill on each data-parallel rank;
    global_batch_size: records generated and appended to the predictions per batch (all ranks together):
                       the unit of resumption."""

    test_path: str = ""
    train_path: str | None = None
    go_obo: str | None = None
    limit: int | None = None
    tasks: str | None = None
    micro_batch_size: int = 8
    global_batch_size: int = 8

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"data.limit must be >= 1, got {self.limit}")
        if self.micro_batch_size < 1 or self.global_batch_size < 1:
            raise ValueError("data.micro_batch_size and data.global_batch_size must be >= 1")

    def task_set(self) -> set[str] | None:
        if not self.tasks:
            return None
        return {task.strip() for task in self.tasks.split(",") if task.strip()}


@dataclass
class EvalGenerationConfig:
    """Greedy completion for every record, plus `samples` sampled completions per GO record (their term
    frequencies are the confidences F-max and S-min sweep)."""

    samples: int = 5
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    seed: int = 0
    system_prompt: str | None = "default"  # "default": training's system prompt; None: no system turn

    def __post_init__(self) -> None:
        if self.samples < 0:
            raise ValueError(f"generation.samples must be >= 0, got {self.samples}")
        if self.samples and self.temperature <= 0:
            raise ValueError("sampled completions need generation.temperature > 0 (0 is greedy)")
        if self.max_new_tokens < 1:
            raise ValueError(f"generation.max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class EvalConfig:
    """checkpoint: a megatron checkpoint (step or run folder), generated at the TP/PP given; or
    model:      an exported HF folder, generated with transformers `generate`.
    out_dir:    the run folder: predictions.jsonl (appended per batch, resumable), results.json."""

    out_dir: str
    checkpoint: str | None = None
    model: str | None = None
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    generation: EvalGenerationConfig = field(default_factory=EvalGenerationConfig)
    baselines: str = ""  # comma-separated: naive, homology
    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    tokenizer: str = "offline"  # --checkpoint: the tokenizer source
    device: str | None = None  # --model: cuda | cpu
    dtype: str | None = None
    bootstrap_resamples: int = 1000
    progress: bool = True
    name: str | None = None  # the label in reports (default: the checkpoint's run folder or the model folder)

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (self.model is None):
            raise ValueError("give exactly one of checkpoint (megatron) and model (an exported HF folder)")
        unknown = set(self.baseline_names()) - set(BASELINES)
        if unknown:
            raise ValueError(f"unknown baseline(s) {sorted(unknown)}; choose from {', '.join(BASELINES)}")
        if self.baseline_names() and not self.data.train_path:
            raise ValueError("baselines need the training records: data.train_path (--train)")
        if self.bootstrap_resamples < 1:
            raise ValueError(f"bootstrap_resamples must be >= 1, got {self.bootstrap_resamples}")

    def baseline_names(self) -> list[str]:
        return [name.strip() for name in self.baselines.split(",") if name.strip()]
