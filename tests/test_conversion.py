"""HF <-> Megatron conversion: round trips at TP/PP, resharding, the streaming writer, and every bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from protein_llm_nemo.conversion.hf_io import (
    CheckpointError,
    HFCheckpointReader,
    HFCheckpointWriter,
    TensorPlan,
    resolve_hf_source,
)
from protein_llm_nemo.conversion.qwen3_export import export_plan
from protein_llm_nemo.conversion.roundtrip import save_random_hf_qwen3
from protein_llm_nemo.models.qwen3 import Qwen3Arch, qwen3_preset
from protein_llm_nemo.testing.multiprocess import DistributedTestError, run_distributed

REPO = Path(__file__).resolve().parents[1]
TOKENS = torch.randint(0, 151936, (2, 10), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("conversion") / "hf_tiny"
    save_random_hf_qwen3(qwen3_preset("tiny"), folder, seed=21)
    return folder


@pytest.fixture(scope="module")
def hf_logits(hf_tiny) -> torch.Tensor:
    from transformers import Qwen3ForCausalLM

    with torch.no_grad():
        return Qwen3ForCausalLM.from_pretrained(hf_tiny).eval()(TOKENS).logits


# ---------------------------------------------------------------- round trips


def _roundtrip_body(rank: int, world_size: int, preset: str, tp: int, pp: int) -> dict:
    from protein_llm_nemo.conversion.roundtrip import RoundtripConfig, run_roundtrip

    return run_roundtrip(
        RoundtripConfig(preset=preset, tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    )


@pytest.mark.parametrize(
    ("preset", "tp", "pp"),
    [("tiny", 1, 1), ("tiny", 2, 1), ("tiny", 1, 2), ("tiny-tied", 2, 1), ("tiny-tied", 1, 2)],
)
def test_roundtrip_is_exact_at_every_layout(preset, tp, pp):
    results = run_distributed(_roundtrip_body, world_size=tp * pp, args=(preset, tp, pp))
    for result in results:
        assert result == {
            "tp": tp,
            "pp": pp,
            "max_abs_logit_diff": result["max_abs_logit_diff"],
            "roundtrip_bit_exact": True,
        }
        assert result["max_abs_logit_diff"] <= 1e-4


def test_roundtrip_script_under_torchrun_prints_one_json_line():
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        str(REPO / "conversion" / "roundtrip.py"), "--preset", "tiny", "--pipeline-model-parallel-size", "2",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    assert (
        result["pp"] == 2 and result["roundtrip_bit_exact"] is True and result["max_abs_logit_diff"] <= 1e-4
    )


# ---------------------------------------------------------------- resharding


def _import_body(rank: int, world_size: int, hf: str, out: str, tp: int, pp: int) -> None:
    from protein_llm_nemo.conversion.qwen3_import import import_hf_checkpoint
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(ParallelConfig(tp, pp))
    import_hf_checkpoint(hf, out)


def _logits_body(rank: int, world_size: int, checkpoint: str, tp: int, pp: int, tokens: torch.Tensor):
    from protein_llm_nemo.conversion.checkpoints import build_model_for_checkpoint
    from protein_llm_nemo.models.forward import forward_logits
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(ParallelConfig(tp, pp))
    model, header = build_model_for_checkpoint(checkpoint, parallel_output=False)
    logits = forward_logits(model.eval(), tokens)
    return None if logits is None else logits[..., : header.arch.vocab_size]


def test_checkpoint_saved_at_tp2_loads_at_tp1_and_pp2(tmp_path, hf_tiny, hf_logits):
    checkpoint = tmp_path / "megatron_tp2"
    run_distributed(_import_body, world_size=2, args=(str(hf_tiny), str(checkpoint), 2, 1))
    header = json.loads((checkpoint / "protein_llm_checkpoint.json").read_text())
    assert header["tensor_model_parallel_size"] == 2
    (tp1,) = run_distributed(_logits_body, world_size=1, args=(str(checkpoint), 1, 1, TOKENS))
    pp2 = run_distributed(_logits_body, world_size=2, args=(str(checkpoint), 1, 2, TOKENS))
    assert pp2[0] is None and pp2[1] is not None
    assert (tp1 - hf_logits).abs().max() < 1e-4
    assert (pp2[1] - hf_logits).abs().max() < 1e-4


def _gather_body(rank: int, world_size: int, checkpoint: str, source: str, tp: int, pp: int) -> bool | None:
    """The live-model export path: gather a TP/PP-sharded model back into HF tensors on rank 0."""
    from protein_llm_nemo.conversion.checkpoints import build_model_for_checkpoint
    from protein_llm_nemo.conversion.qwen3_export import iter_hf_tensors
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(ParallelConfig(tp, pp))
    model, header = build_model_for_checkpoint(checkpoint)
    gathered = dict(iter_hf_tensors(model, header.arch, torch.float32))
    if rank != 0:
        return None if not gathered else False
    reference = HFCheckpointReader(source)
    return set(gathered) == set(reference.keys()) and all(
        torch.equal(t, reference.get(k)) for k, t in gathered.items()
    )


@pytest.mark.parametrize(("tp", "pp"), [(2, 1), (1, 2)])
def test_live_model_gathers_back_to_the_hf_weights(megatron_tiny, hf_tiny, tp, pp):
    results = run_distributed(_gather_body, world_size=2, args=(str(megatron_tiny), str(hf_tiny), tp, pp))
    assert results == [True, None]


# ---------------------------------------------------------------- streaming writer


def test_sharded_export_loads_in_transformers(tmp_path, hf_tiny, hf_logits):
    from transformers import Qwen3ForCausalLM

    checkpoint, exported = tmp_path / "megatron", tmp_path / "hf_sharded"
    run_distributed(_import_body, world_size=1, args=(str(hf_tiny), str(checkpoint), 1, 1))
    run_distributed(_export_body, world_size=1, args=(str(checkpoint), str(exported), 4 * 1024**2))
    index = json.loads((exported / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    assert (exported / "hf_assets").exists() is False and (exported / "config.json").exists()
    with torch.no_grad():
        logits = Qwen3ForCausalLM.from_pretrained(exported).eval()(TOKENS).logits
    assert torch.equal(logits, hf_logits)


def _export_body(
    rank: int, world_size: int, checkpoint: str, out: str, max_shard_bytes: int, overwrite: bool = False
):
    from protein_llm_nemo.conversion.qwen3_export import export_hf_checkpoint
    from protein_llm_nemo.runtime import initialize_distributed

    initialize_distributed()
    export_hf_checkpoint(checkpoint, out, max_shard_bytes=max_shard_bytes, overwrite=overwrite)


def test_writer_streams_planned_tensors_and_rejects_surprises(tmp_path):
    plan = [TensorPlan("a", (2, 3), torch.bfloat16), TensorPlan("b", (4,), torch.float32)]
    writer = HFCheckpointWriter(tmp_path / "w", plan, max_shard_bytes=1)
    a = torch.randn(2, 3).to(torch.bfloat16)
    writer.add("a", a)
    with pytest.raises(CheckpointError, match="expected b"):
        writer.add("c", torch.zeros(4))
    writer.add("b", torch.arange(4.0))
    weight_map = writer.close()
    assert weight_map == {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    assert torch.equal(load_file(tmp_path / "w" / weight_map["a"])["a"], a)
    assert torch.equal(HFCheckpointReader(tmp_path / "w").get("b"), torch.arange(4.0))
    short = HFCheckpointWriter(tmp_path / "short", plan)
    short.add("a", a)
    with pytest.raises(CheckpointError, match="ended before 1 planned"):
        short.close()


def test_export_plan_follows_the_hf_layout():
    plan = export_plan(qwen3_preset("tiny-tied"), torch.float32)
    names = [item.name for item in plan]
    assert names[0] == "model.embed_tokens.weight" and "lm_head.weight" not in names
    assert len(names) == len(set(names)) == 2 + 11 * 2


# ---------------------------------------------------------------- bad input


def _edit_checkpoint(source: Path, target: Path, edit) -> Path:
    shutil.copytree(source, target)
    tensors = load_file(target / "model.safetensors")
    edit(tensors)
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    return target


def _import_error_body(rank: int, world_size: int, hf: str, out: str, overwrite: bool = False) -> str:
    from protein_llm_nemo.conversion.qwen3_import import import_hf_checkpoint
    from protein_llm_nemo.runtime import initialize_distributed

    initialize_distributed()
    try:
        import_hf_checkpoint(hf, out, overwrite=overwrite)
    except CheckpointError as error:
        return str(error)
    return "no error"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("model.layers.1.mlp.up_proj.weight"), "1 missing tensor.*up_proj"),
        (
            lambda t: t.update({"model.layers.9.extra.weight": torch.zeros(2)}),
            "1 unexpected tensor.*layers.9.extra",
        ),
        (
            lambda t: t.update({"model.norm.weight": torch.zeros(65)}),
            r"mis-shaped.*model.norm.weight: \(65,\)",
        ),
    ],
    ids=["missing", "extra", "mis-shaped"],
)
def test_import_rejects_bad_hf_checkpoints_before_writing(tmp_path, hf_tiny, edit, message):
    bad = _edit_checkpoint(hf_tiny, tmp_path / "bad", edit)
    out = tmp_path / "out"
    (error,) = run_distributed(_import_error_body, world_size=1, args=(str(bad), str(out)))
    assert error != "no error"
    assert re.search(message, error), error
    assert not out.exists()  # rejected before anything was written


def test_import_rejects_other_architectures_and_pickles(tmp_path, hf_tiny):
    llama = tmp_path / "llama"
    shutil.copytree(hf_tiny, llama)
    config = json.loads((llama / "config.json").read_text())
    config.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (llama / "config.json").write_text(json.dumps(config))
    (error,) = run_distributed(_import_error_body, world_size=1, args=(str(llama), str(tmp_path / "o1")))
    assert "expected a Qwen3 checkpoint" in error and "'llama'" in error

    pickled = tmp_path / "pickled"
    shutil.copytree(hf_tiny, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled .bin files are refused"):
        HFCheckpointReader(pickled)
    with pytest.raises(CheckpointError, match="no such folder"):
        resolve_hf_source("./nowhere")


def test_non_empty_output_needs_overwrite_and_is_replaced_atomically(tmp_path, hf_tiny):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    (error,) = run_distributed(_import_error_body, world_size=1, args=(str(hf_tiny), str(out)))
    assert "not empty; pass --overwrite" in error
    assert (out / "keep.txt").read_text() == "user data"
    (result,) = run_distributed(_import_error_body, world_size=1, args=(str(hf_tiny), str(out), True))
    assert result == "no error"
    assert not (out / "keep.txt").exists() and (out / "protein_llm_checkpoint.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dirs left


def _export_error_body(rank: int, world_size: int, checkpoint: str, out: str) -> str:
    try:
        _export_body(rank, world_size, checkpoint, out, 2 * 1024**3)
    except CheckpointError as error:
        return str(error)
    return "no error"


@pytest.fixture(scope="module")
def megatron_tiny(tmp_path_factory, hf_tiny) -> Path:
    checkpoint = tmp_path_factory.mktemp("megatron") / "tiny"
    run_distributed(_import_body, world_size=1, args=(str(hf_tiny), str(checkpoint), 1, 1))
    return checkpoint


def _with_header(source: Path, target: Path, edit) -> Path:
    shutil.copytree(source, target)
    path = target / "protein_llm_checkpoint.json"
    header = json.loads(path.read_text())
    edit(header)
    path.write_text(json.dumps(header))
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h["arch"].update(hidden_size=128), "mis-shaped tensors"),
        (lambda h: h["arch"].update(num_hidden_layers=3), "mis-shaped tensors"),
        (lambda h: h["arch"].update(tie_word_embeddings=True), "1 unexpected tensor.*output_layer"),
        (lambda h: h.update(model_type="llama"), "architecture 'llama' is not supported"),
    ],
    ids=["hidden-size", "layers", "tied-vs-untied", "architecture"],
)
def test_export_rejects_mismatched_megatron_checkpoints(tmp_path, megatron_tiny, edit, message):
    bad = _with_header(megatron_tiny, tmp_path / "bad", edit)
    (error,) = run_distributed(_export_error_body, world_size=1, args=(str(bad), str(tmp_path / "out")))
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists()


def test_export_rejects_missing_tensors_and_corrupt_headers(tmp_path, hf_tiny, megatron_tiny):
    tied_source = tmp_path / "hf_tied"
    save_random_hf_qwen3(qwen3_preset("tiny-tied"), tied_source, seed=3)
    tied = tmp_path / "tied"
    run_distributed(_import_body, world_size=1, args=(str(tied_source), str(tied), 1, 1))
    claims_untied = _with_header(
        tied, tmp_path / "claims_untied", lambda h: h["arch"].update(tie_word_embeddings=False)
    )
    (error,) = run_distributed(
        _export_error_body, world_size=1, args=(str(claims_untied), str(tmp_path / "o1"))
    )
    assert "missing 1 tensor(s): ['output_layer.weight']" in error

    corrupt = tmp_path / "corrupt"
    shutil.copytree(megatron_tiny, corrupt)
    (corrupt / "protein_llm_checkpoint.json").write_text("{not json")
    (error,) = run_distributed(_export_error_body, world_size=1, args=(str(corrupt), str(tmp_path / "o2")))
    assert "is corrupt" in error
    (error,) = run_distributed(_export_error_body, world_size=1, args=(str(hf_tiny), str(tmp_path / "o3")))
    assert "not a protein-llm-nemo Megatron checkpoint" in error


def test_cli_reports_errors_with_exit_code_2(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "conversion" / "import_hf.py"), "--hf-model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    assert "error:" in done.stderr and "no such folder" in done.stderr


def test_unreachable_layout_is_reported(tmp_path, hf_tiny):
    with pytest.raises(DistributedTestError, match="not divisible"):
        run_distributed(_import_body, world_size=1, args=(str(hf_tiny), str(tmp_path / "o"), 2, 1))


# ---------------------------------------------------------------- unreadable files: one line naming the file


def _cli_body(rank: int, world_size: int, argv: list[str]) -> tuple[int, str]:
    """`protein-llm <argv>` in this process: its exit code and everything it wrote to stderr."""
    import contextlib
    import io

    from protein_llm_nemo.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stderr.getvalue()


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _broken_hf(hf_tiny: Path, target: Path, what: str) -> tuple[Path, str]:
    shutil.copytree(hf_tiny, target)
    if what == "truncated-safetensors":
        _truncate(target / "model.safetensors")
        return target, rf"{re.escape(str(target / 'model.safetensors'))} is not a readable safetensors file"
    (target / "config.json").write_text('{\n  "model_type": "qwen3",\n  "hidden_size": 64,,\n}\n')
    return (
        target,
        rf"{re.escape(str(target / 'config.json'))} is corrupt: not valid JSON .* line 3, column 21",
    )


@pytest.mark.parametrize("what", ["truncated-safetensors", "malformed-config"])
def test_import_cli_names_the_unreadable_file_in_one_line(tmp_path, hf_tiny, what):
    broken, expected = _broken_hf(hf_tiny, tmp_path / "hf", what)
    out = tmp_path / "out"
    argv = ["convert", "import", "--hf-model", str(broken), "--out", str(out)]
    ((code, stderr),) = run_distributed(_cli_body, world_size=1, args=(argv,))
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, stderr
    assert re.search(expected, errors[0]), errors[0]
    assert "Traceback" not in stderr and not out.exists()


def test_reader_errors_name_the_file(tmp_path, hf_tiny):
    broken, expected = _broken_hf(hf_tiny, tmp_path / "hf", "truncated-safetensors")
    with pytest.raises(CheckpointError, match=expected):
        HFCheckpointReader(broken)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-1.safetensors"]}')
    with pytest.raises(CheckpointError, match=r"index.json is corrupt: not valid JSON .* line 1, column 43"):
        HFCheckpointReader(sharded)


def _truncated_checkpoint(megatron_tiny: Path, target: Path) -> Path:
    shutil.copytree(megatron_tiny, target)
    _truncate(max(target.glob("*.distcp"), key=lambda p: p.stat().st_size))
    return target


def test_export_cli_names_a_truncated_distcp_in_one_line(tmp_path, megatron_tiny):
    broken = _truncated_checkpoint(megatron_tiny, tmp_path / "megatron")
    out = tmp_path / "out"
    argv = ["convert", "export", "--checkpoint", str(broken), "--out", str(out)]
    ((code, stderr),) = run_distributed(_cli_body, world_size=1, args=(argv,))
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, stderr
    assert re.search(r"__0_\d\.distcp is truncated \(\d+ of \d+ bytes\)", errors[0]), errors[0]
    assert "Traceback" not in stderr and not out.exists()


def _load_truncated_body(rank: int, world_size: int, checkpoint: str) -> str:
    from protein_llm_nemo.conversion.checkpoints import build_model_for_checkpoint
    from protein_llm_nemo.runtime import initialize_distributed

    initialize_distributed()
    try:
        build_model_for_checkpoint(checkpoint)
    except CheckpointError as error:
        return str(error)
    return "no error"


def test_loading_a_truncated_distcp_names_the_file(tmp_path, megatron_tiny):
    broken = _truncated_checkpoint(megatron_tiny, tmp_path / "megatron")
    (error,) = run_distributed(_load_truncated_body, world_size=1, args=(str(broken),))
    assert re.search(r"__0_\d\.distcp is truncated \(\d+ of \d+ bytes\)", error), error


# ---------------------------------------------------------------- what an export says about itself

IM_END, END_OF_TEXT = 151645, 151643


@pytest.fixture(scope="module")
def exported_tiny(tmp_path_factory, megatron_tiny) -> Path:
    out = tmp_path_factory.mktemp("exported") / "hf"
    run_distributed(_export_body, world_size=1, args=(str(megatron_tiny), str(out), 2 * 1024**3))
    return out


def test_exported_config_has_what_transformers_and_vllm_read(exported_tiny):
    from transformers import AutoConfig

    config = json.loads((exported_tiny / "config.json").read_text())
    arch = qwen3_preset("tiny")
    # vLLM resolves the model class from `architectures` (vllm/model_executor/models/registry.py), the dtype
    # from `torch_dtype` (vllm/config.py `_find_dtype`) and its Qwen3 layers read `rope_theta`,
    # `rms_norm_eps`, `head_dim`, `attention_bias`, `max_position_embeddings` (.../models/qwen3.py).
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["model_type"] == "qwen3"
    assert config["torch_dtype"] == config["dtype"] == "float32"
    assert (config["bos_token_id"], config["eos_token_id"]) == (END_OF_TEXT, IM_END)
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] == arch.rope_theta
    assert config["rms_norm_eps"] == arch.rms_norm_eps and config["head_dim"] == arch.head_dim
    assert config["attention_bias"] is False and config["hidden_act"] == "silu"
    assert config["max_position_embeddings"] == arch.max_position_embeddings
    assert config["tie_word_embeddings"] is False and config["vocab_size"] == arch.vocab_size
    assert Qwen3Arch.from_hf_config(AutoConfig.from_pretrained(exported_tiny)) == arch
    generation = json.loads((exported_tiny / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [IM_END, END_OF_TEXT] and generation["pad_token_id"] == END_OF_TEXT


def _always_im_end(model) -> None:
    """Make `<|im_end|>` the argmax at every step: residual dimension 0 holds a large constant that no layer
    writes to, the final norm keeps only that dimension, and only `<|im_end|>`'s output row reads it."""
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 100.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0] = 0
            layer.mlp.down_proj.weight[0] = 0
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1
        model.lm_head.weight.zero_()
        model.lm_head.weight[IM_END, 0] = 1


def test_generation_of_an_export_stops_at_im_end(exported_tiny):
    from transformers import GenerationConfig, Qwen3ForCausalLM

    model = Qwen3ForCausalLM.from_pretrained(exported_tiny).eval()
    _always_im_end(model)
    prompt = torch.tensor([[100, 200, 300]])
    assert model.generate(prompt, max_new_tokens=6, do_sample=False)[0, 3:].tolist() == [IM_END]
    # The control: without the eos ids the same greedy decoding runs on to max_new_tokens.
    model.generation_config = GenerationConfig()
    assert model.generate(prompt, max_new_tokens=6, do_sample=False)[0, 3:].tolist() == [IM_END] * 6


def test_generation_config_keeps_the_sources_settings_and_completes_its_eos(tmp_path):
    from protein_llm_nemo.conversion.hf_metadata import write_generation_config

    (tmp_path / "generation_config.json").write_text(
        json.dumps({"_from_model_config": True, "eos_token_id": IM_END, "temperature": 0.6, "top_k": 20})
    )
    written = write_generation_config(tmp_path, vocab_size=151936)
    assert written == json.loads((tmp_path / "generation_config.json").read_text())
    assert written["eos_token_id"] == [IM_END, END_OF_TEXT] and written["temperature"] == 0.6
    assert "_from_model_config" not in written
    # A vocabulary without Qwen3's special tokens (the CPU test models) gets no ids and no file.
    assert write_generation_config(tmp_path / "none", vocab_size=1024) is None


# ---------------------------------------------------------------- the LLM loaded is the LLM configured


def _load_language_model_body(rank: int, world_size: int, checkpoint: str, changes: dict) -> str:
    import dataclasses

    from protein_llm_nemo.models.protein_llm import build_protein_llm
    from protein_llm_nemo.runtime import initialize_distributed
    from protein_llm_nemo.testing.tiny import tiny_bridge_config

    initialize_distributed()
    arch = dataclasses.replace(qwen3_preset("tiny"), **changes)
    model = build_protein_llm(arch, tiny_bridge_config("mlp"))
    try:
        model.load_language_model(checkpoint)
    except CheckpointError as error:
        return str(error)
    return "loaded"


def test_load_language_model_refuses_another_architecture_listing_each_field(tmp_path, megatron_tiny):
    # Same tensor shapes, another rotary base and norm eps: only the header tells them apart.
    changes = {"rope_theta": 5_000_000.0, "rms_norm_eps": 1e-5}
    (error,) = run_distributed(_load_language_model_body, world_size=1, args=(str(megatron_tiny), changes))
    assert "holds another language model than the one configured (2 field(s) differ" in error, error
    assert "rope_theta: model 5000000.0, checkpoint 1000000.0" in error
    assert "rms_norm_eps: model 1e-05, checkpoint 1e-06" in error
    (error,) = run_distributed(
        _load_language_model_body, world_size=1, args=(str(megatron_tiny), {"num_hidden_layers": 4})
    )
    assert "num_hidden_layers: model 4, checkpoint 2" in error, error
    (result,) = run_distributed(_load_language_model_body, world_size=1, args=(str(megatron_tiny), {}))
    assert result == "loaded"
    # Without a header (a bare dist_checkpointing.save) the load goes ahead on the tensor shapes alone.
    headerless = tmp_path / "headerless"
    shutil.copytree(megatron_tiny, headerless)
    (headerless / "protein_llm_checkpoint.json").unlink()
    (result,) = run_distributed(_load_language_model_body, world_size=1, args=(str(headerless), changes))
    assert result == "loaded"
