"""`protein-llm generate`: answer prompts about proteins with an exported HF ProteinLLM (or plain Qwen3) folder,
or straight from a megatron checkpoint (the policy being trained, at any TP/PP under torchrun).

    protein-llm generate --model out/hf --sequence MKTAYIAKQR --prompt "What does this protein do?"
    protein-llm generate --model out/hf --input questions.jsonl --output answers.jsonl   # batch, progress bar
    protein-llm generate --checkpoint runs/sft-mlp-tiny-cpu/step_0000020 --input questions.jsonl

JSONL records: {"prompt": "...", "sequence": "MKT..."} or {"prompt": ..., "sequences": [...]} (an "id" is
copied through). Invalid sequences stop a single run with a clear error; in batch mode the record is
written with an "error" field and counted, and the rest go on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def add_generate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="exported HF folder (ProteinLLM or plain Qwen3)")
    source.add_argument("--checkpoint", help="megatron ProteinLLM checkpoint (a step folder or a run folder)")
    parser.add_argument(
        "--tensor-model-parallel-size", type=int, default=1, help="--checkpoint: TP under torchrun"
    )
    parser.add_argument(
        "--pipeline-model-parallel-size", type=int, default=1, help="--checkpoint: PP under torchrun"
    )
    parser.add_argument(
        "--tokenizer", default="offline", help="--checkpoint: tokenizer source (offline, a folder)"
    )
    parser.add_argument("--prompt", help="the question (single mode)")
    parser.add_argument("--sequence", action="append", default=[], metavar="SEQ",
                        help="amino-acid sequence; repeat for several proteins")  # fmt: skip
    parser.add_argument("--input", help="JSONL of {prompt, sequence|sequences[, id]} (batch mode)")
    parser.add_argument("--output", help="JSONL to write in batch mode (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy decoding")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="default: bfloat16 on GPU, float32 on CPU")  # fmt: skip
    parser.add_argument("--system-prompt", default=None, help="replace the default system prompt")
    return parser


class HFGenerator:
    """Model + processor of an exported folder and one `transformers` `generate` call per batch of prompts."""

    def __init__(self, folder: str, device: str | None = None, dtype: str | None = None, system_prompt=None):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM  # Auto classes: registered by our package

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = getattr(torch, dtype) if dtype else (
            torch.bfloat16 if self.device.type == "cuda" else torch.float32
        )  # fmt: skip
        config = AutoConfig.from_pretrained(folder)
        self.is_protein_llm = config.model_type == "protein_llm"
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype).to(self.device).eval()
        self.processor = self._processor(folder, config, system_prompt)

    def _processor(self, folder: str, config: Any, system_prompt: str | None):
        from protein_llm_nemo.hf.processing import ProteinLLMProcessor

        if self.is_protein_llm:
            from transformers import AutoProcessor

            processor = AutoProcessor.from_pretrained(folder)
        else:  # a plain Qwen3 export: the text bridge's prompt format
            from transformers import AutoTokenizer

            processor = ProteinLLMProcessor(AutoTokenizer.from_pretrained(folder), bridge="text")
        if system_prompt is not None:
            processor.system_prompt = system_prompt
        return processor

    def validate(self, sequences: list[str]) -> list[str]:
        return self.processor.validate_sequences(sequences) if sequences else []

    def __call__(self, prompts: list[str], sequences: list[list[str]], **sampling: Any) -> list[str]:
        import torch

        inputs = self.processor(prompts, proteins=sequences)
        protein_sequences = inputs.pop("protein_sequences", None)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        kwargs: dict[str, Any] = {"max_new_tokens": sampling["max_new_tokens"]}
        if sampling["temperature"] > 0:
            kwargs.update(do_sample=True, temperature=sampling["temperature"], top_p=sampling["top_p"])
            kwargs["top_k"] = sampling["top_k"] or None
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        tokenizer = self.processor.tokenizer
        kwargs["pad_token_id"] = tokenizer.pad_token_id
        kwargs["eos_token_id"] = tokenizer.convert_tokens_to_ids("<|im_end|>")
        if self.is_protein_llm:
            kwargs["suppress_tokens"] = list(self.model.config.protein_token_ids)
            if protein_sequences:
                kwargs["protein_sequences"] = protein_sequences
        with torch.no_grad():
            output = self.model.generate(**inputs, **kwargs)
        new = output[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "seed": args.seed,
    }


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _read_records(path: str) -> list[dict[str, Any]]:
    records = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error})") from None
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise ValueError(f"{path}:{number}: each record needs a string 'prompt'")
            sequences = record.get("sequences", [record["sequence"]] if "sequence" in record else [])
            if isinstance(sequences, str) or not isinstance(sequences, list):
                raise ValueError(f"{path}:{number}: 'sequences' must be a list of strings")
            record["_sequences"], record["_line"] = sequences, number
            records.append(record)
    return records


def run_generate(args: argparse.Namespace) -> int:
    from protein_llm_nemo.encoders.sequences import InvalidSequenceError

    if (args.input is None) == (args.prompt is None):
        return _fail("give either --prompt (with --sequence) or --input FILE.jsonl")
    if args.input is not None and args.sequence:
        return _fail("--sequence belongs to single mode; put sequences in the JSONL records")
    if args.model is not None and not Path(args.model).is_dir():
        return _fail(f"--model {args.model}: no such folder")
    import torch

    torch.manual_seed(args.seed)
    if args.prompt is not None:
        try:
            generator = _generator(args)
            sequences = generator.validate(args.sequence)
            answer = generator([args.prompt], [sequences], **_sampling(args))[0]
            if _is_rank0():
                print(answer)
        except InvalidSequenceError as error:
            return _fail(f"invalid --sequence: {error}")
        except ValueError as error:
            return _fail(str(error))
        return 0
    try:
        records = _read_records(args.input)
    except (OSError, ValueError) as error:
        return _fail(str(error))
    from tqdm import tqdm

    try:
        generator = _generator(args)
    except (OSError, ValueError) as error:
        return _fail(str(error))
    writes = _is_rank0()  # every rank generates (its shard of the model), rank 0 writes
    target = (args.output or None) if writes else os.devnull
    out = open(target, "w") if target else sys.stdout  # noqa: SIM115 - closed below
    failed = 0
    try:
        with tqdm(
            total=len(records), desc="generate", unit="prompt", file=sys.stderr, disable=not writes
        ) as bar:
            valid: list[dict[str, Any]] = []
            for record in records:
                try:
                    record["_sequences"] = generator.validate(record["_sequences"])
                    valid.append(record)
                except InvalidSequenceError as error:
                    failed += 1
                    _write(out, record, error=f"line {record['_line']}: {error}")
                    bar.update(1)
            for start in range(0, len(valid), args.batch_size):
                batch = valid[start : start + args.batch_size]
                answers = generator(
                    [r["prompt"] for r in batch], [r["_sequences"] for r in batch], **_sampling(args)
                )
                for record, answer in zip(batch, answers, strict=True):
                    _write(out, record, response=answer)
                bar.update(len(batch))
    finally:
        if out is not sys.stdout:
            out.close()
    if failed:
        print(
            f"{failed} of {len(records)} records had invalid sequences (see their 'error')", file=sys.stderr
        )
    return 1 if failed == len(records) else 0


def _generator(args: argparse.Namespace) -> Any:
    if args.checkpoint is not None:
        from protein_llm_nemo.generation.checkpoint_generator import CheckpointGenerator

        return CheckpointGenerator(
            args.checkpoint,
            args.tensor_model_parallel_size,
            args.pipeline_model_parallel_size,
            args.tokenizer,
            args.system_prompt,
            args.dtype,
        )
    return HFGenerator(args.model, args.device, args.dtype, args.system_prompt)


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _write(out, record: dict[str, Any], **fields: Any) -> None:
    row = {k: v for k, v in record.items() if not k.startswith("_")}
    row.update(fields)
    out.write(json.dumps(row) + "\n")
    out.flush()


def register(subparsers: argparse._SubParsersAction) -> None:
    add_generate_arguments(
        subparsers.add_parser(
            "generate",
            help="answer prompts about proteins with an exported HF model or a megatron checkpoint",
        )
    ).set_defaults(handler=run_generate)
