"""`pip install 'protein-llm-nemo[inference]'` is enough to serve an export.

A fresh venv gets the local CPU torch wheel, then this package with the `[inference]` extra and nothing else:
pip resolves the declared dependencies, so this proves they suffice. In it, a tiny ProteinLLM exported by
the training side (megatron model -> HF folder with the Qwen3 tokenizer; encoder `hf-esmc-tiny`, which runs
through transformers) loads with transformers' Auto classes and answers a prompt about an amino-acid
sequence. megatron-core and NeMo-Run are not installed there, and the training side says what to install.
About 40 s with a warm pip cache (most of it installing torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from protein_llm_nemo.testing.multiprocess import run_distributed

REPO = Path(__file__).resolve().parents[2]
TORCH = "torch==2.13.0"  # the local CPU wheel (constraints.txt): an unpinned torch pulls GBs of CUDA wheels
SEQUENCE = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _export(rank: int, world_size: int, out: str) -> None:
    from protein_llm_nemo.conversion.protein_llm_export import export_protein_llm
    from protein_llm_nemo.conversion.spec import ProteinLLMSpec
    from protein_llm_nemo.models.protein_llm import build_protein_llm
    from protein_llm_nemo.models.qwen3 import qwen3_preset
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed
    from protein_llm_nemo.testing.tiny import tiny_bridge_config

    initialize_distributed(ParallelConfig(), seed=0)
    arch = qwen3_preset("tiny")  # the real Qwen3 vocabulary: the exported tokenizer's ids fit
    bridge = tiny_bridge_config("mlp", encoder_dim=64)  # hf-esmc-tiny's width
    spec = ProteinLLMSpec(arch, bridge, encoder="hf-esmc-tiny")
    model = build_protein_llm(arch, bridge, protein_token_ids=spec.protein_token_ids).eval()
    export_protein_llm(model, spec, out, tokenizer="offline")


SERVE = textwrap.dedent(
    """
    import importlib.util, json, sys

    import torch

    import protein_llm_nemo  # registers the Auto classes
    from transformers import AutoModelForCausalLM, AutoProcessor
    from protein_llm_nemo.generation.cli import HFGenerator  # what `protein-llm generate --model` runs

    folder = sys.argv[1]
    out = {"missing": [m for m in ("megatron", "nemo_run") if importlib.util.find_spec(m) is None]}
    generator = HFGenerator(folder, device="cpu")
    sampling = dict(max_new_tokens=6, temperature=0.0, top_p=1.0, top_k=0)
    out["answer"] = generator(["What does this protein do?"], [generator.validate([sys.argv[2]])], **sampling)

    # the documented Python path (docs/conversion.md)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    inputs = processor("What does this protein do?", proteins=[sys.argv[2]])
    prompt = inputs["input_ids"].shape[1]
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    out["new_tokens"] = ids.shape[1] - prompt
    out["encoder"] = type(model.protein_encoder).__name__
    try:
        import protein_llm_nemo.launch.recipes  # noqa: F401 - the training side
    except ModuleNotFoundError as error:
        out["train_error"] = str(error)
    out["imported"] = sorted({m.split(".")[0] for m in sys.modules} & {"megatron", "nemo_run", "esm"})
    print(json.dumps(out))
    """
)


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900, **kwargs
    )
    assert result.returncode == 0, (" ".join(args), result.stdout[-2000:], result.stderr[-4000:])
    return result


@pytest.fixture(scope="module")
def inference_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "inference"
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, TORCH])
    # pip resolves the extra's declared dependencies (from its cache or PyPI); constraints keep torch in place
    _run([*pip, "-c", str(REPO / "constraints.txt"), "-e", f"{REPO}[inference]"])
    return venv


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "hf"
    run_distributed(_export, world_size=1, args=(str(out),))
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    return out


def test_an_export_loads_and_generates_without_megatron_core(inference_venv, exported):
    python = str(inference_venv / "bin" / "python")
    result = _run([python, "-c", SERVE, str(exported), SEQUENCE], env=ENV)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["missing"] == ["megatron", "nemo_run"]  # the [inference] install holds neither
    assert out["imported"] == []
    assert isinstance(out["answer"], list) and len(out["answer"]) == 1
    assert out["new_tokens"] == 5 and out["encoder"] == "HfEsmcEncoder"
    assert "pip install 'protein-llm-nemo[train]'" in out["train_error"]


def test_nemo_run_without_the_train_extra_says_what_to_install(inference_venv):
    result = subprocess.run(
        [str(inference_venv / "bin" / "nemo-run"), "recipes/sft.py", "--bridge", "mlp"],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No module named 'nemo_run'" in lines[0], result.stderr[-3000:]
    assert "pip install 'protein-llm-nemo[train]'" in lines[0]


def test_esm_encoders_without_esm_say_what_to_install(inference_venv):
    code = (
        "from protein_llm_nemo.encoders import build_protein_encoder\n"
        "try:\n    build_protein_encoder('esmc-tiny')\n"
        "except ModuleNotFoundError as error:\n    print(error)\n"
    )
    result = _run([str(inference_venv / "bin" / "python"), "-c", code], env=ENV)
    assert "No module named 'esm'" in result.stdout and "pip install 'protein-llm-nemo[esm]'" in result.stdout
    assert "--no-deps esm==3.2.1.post1" in result.stdout
