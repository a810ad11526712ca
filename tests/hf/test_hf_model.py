"""The HF ProteinLLM on its own: Auto registration without trust_remote_code, generation with the KV cache
equals step-by-step recomputation for every bridge, the processor's placeholders and validation, and the
`protein-llm generate` command (single and JSONL batch mode, invalid sequences)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from protein_llm_nemo.testing.export import tiny_spec
from protein_llm_nemo.testing.tiny import TINY_TOKEN_IDS

ENCODER = "esm2-tiny"  # 64-d random-weight encoder, registered offline


def _tiny_hf(name: str, vocab_size: int = 1024, encoder: str | None = None, encoder_dim: int = 32):
    from transformers import AutoModelForCausalLM

    from protein_llm_nemo.conversion.spec import hf_protein_llm_config

    spec = tiny_spec(name)
    spec.arch = type(spec.arch)(
        **{**spec.arch.to_dict(), "vocab_size": vocab_size, "tie_word_embeddings": True}
    )
    spec.bridge_config = (
        spec.bridge_config.replace(encoder_dim=encoder_dim) if name != "text" else spec.bridge_config
    )
    spec.encoder = encoder
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_protein_llm_config(spec)).eval()
    with torch.no_grad():
        for key, param in model.named_parameters():
            if key.endswith(("attn_gate", "ffn_gate")):
                param.fill_(0.5)
    return model, spec


def test_import_is_light_and_registers_the_auto_classes_lazily():
    code = (
        "import sys, protein_llm_nemo; assert 'transformers' not in sys.modules and 'torch' not in sys.modules;"
        "from transformers import AutoConfig; "
        "from protein_llm_nemo.hf.configuration import ProteinLLMConfig; "
        "assert type(AutoConfig.for_model('protein_llm')) is ProteinLLMConfig; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-1500:]


@pytest.mark.parametrize("name", ["mlp", "perceiver", "flamingo"])
def test_generate_with_the_kv_cache_equals_recomputing_every_step(name, tmp_path):
    from transformers import AutoModelForCausalLM

    model, spec = _tiny_hf(name)
    model.save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # no trust_remote_code
    assert type(model).__name__ == "ProteinLLMForCausalLM"
    ids = TINY_TOKEN_IDS
    group = [ids.start] + [ids.embed] * spec.bridge_config.num_slots + [ids.end]
    # two left-padded prompts: one protein, then two proteins
    rows = [[5, 6, *group, 7, 8], [9, *group, 10, *group, 11]]
    width = max(map(len, rows))
    input_ids = torch.zeros(2, width, dtype=torch.long)
    attention = torch.zeros(2, width, dtype=torch.long)
    for b, row in enumerate(rows):
        input_ids[b, width - len(row) :] = torch.tensor(row)
        attention[b, width - len(row) :] = 1
    generator = torch.Generator().manual_seed(3)
    lengths = [6, 9, 4]
    embeddings = torch.randn(3, 9, 32, generator=generator) * 3
    mask = torch.arange(9)[None] < torch.tensor(lengths)[:, None]
    kwargs = {"protein_embeddings": embeddings, "protein_mask": mask}
    out = model.generate(
        input_ids, attention_mask=attention, max_new_tokens=6, do_sample=False, pad_token_id=0, **kwargs
    )
    assert torch.equal(out[:, :width], input_ids)
    current, mask_now = input_ids, attention
    for _ in range(6):
        position_ids = (mask_now.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = model(
                current, attention_mask=mask_now, position_ids=position_ids, use_cache=False, **kwargs
            ).logits[:, -1]
        current = torch.cat([current, logits.argmax(-1, keepdim=True)], dim=1)
        mask_now = torch.cat([mask_now, torch.ones(2, 1, dtype=torch.long)], dim=1)
    assert torch.equal(out, current)
    # the proteins reach the output: other embeddings, other logits
    with torch.no_grad():
        a = model(input_ids, attention_mask=attention, **kwargs).logits
        b = model(
            input_ids, attention_mask=attention, protein_embeddings=-embeddings, protein_mask=mask
        ).logits
    assert (a - b).abs().max() > 1e-4


def test_protein_count_mismatch_and_missing_embeddings_are_errors():
    model, spec = _tiny_hf("mlp")
    ids = TINY_TOKEN_IDS
    input_ids = torch.tensor([[5, ids.start, *[ids.embed] * spec.bridge_config.num_slots, ids.end]])
    with pytest.raises(ValueError, match="no protein embeddings"):
        model(input_ids)
    with pytest.raises(ValueError, match="1 proteins but 2 protein embeddings"):
        model(input_ids, protein_embeddings=torch.randn(2, 4, 32))


@pytest.fixture(scope="module")
def exported_with_encoder(tmp_path_factory):
    """A tied tiny ProteinLLM over the real Qwen3 vocabulary, referencing the offline esm2-tiny encoder."""
    from protein_llm_nemo.conversion.protein_llm_export import save_processor
    from protein_llm_nemo.tokenizer import PROTEIN_TOKEN_IDS, load_tokenizer

    folder = tmp_path_factory.mktemp("generate") / "model"
    model, spec = _tiny_hf("mlp", vocab_size=151936, encoder=ENCODER, encoder_dim=64)
    model.config.protein_token_ids = list(PROTEIN_TOKEN_IDS.all)
    spec.protein_token_ids = PROTEIN_TOKEN_IDS
    model.save_pretrained(folder)
    save_processor(folder, spec, load_tokenizer())
    return folder


def test_processor_expands_placeholders_and_validates(exported_with_encoder):
    from transformers import AutoProcessor

    from protein_llm_nemo.encoders import InvalidSequenceError
    from protein_llm_nemo.tokenizer import PROTEIN_TOKEN_IDS

    processor = AutoProcessor.from_pretrained(exported_with_encoder)
    assert type(processor).__name__ == "ProteinLLMProcessor"
    inputs = processor(["What is it?", "Compare them."], proteins=[["mkt aYI"], ["MKV", "MSS"]])
    assert inputs["protein_sequences"] == ["MKTAYI", "MKV", "MSS"]
    embeds = (inputs["input_ids"] == PROTEIN_TOKEN_IDS.embed).sum(dim=1).tolist()
    assert embeds == [4, 8]  # num_slots = 4 per protein
    assert inputs["attention_mask"][0, 0] == 0  # left padding for generation
    with pytest.raises(InvalidSequenceError, match="invalid character 'J' at position 3"):
        processor("What is it?", proteins=["MKJ"])


def test_generate_command_single_and_batch(exported_with_encoder, tmp_path, capsys):
    from protein_llm_nemo.cli import main

    base = ["generate", "--model", str(exported_with_encoder), "--max-new-tokens", "4"]
    assert main([*base, "--sequence", "MKTAYIAK", "--prompt", "What does it do?"]) == 0
    single = capsys.readouterr().out.strip()
    assert main([*base, "--sequence", "MKTAYIAK", "--prompt", "What does it do?"]) == 0
    assert capsys.readouterr().out.strip() == single  # greedy: deterministic
    assert main([*base, "--sequence", "MK1", "--prompt", "x"]) == 2
    assert "invalid --sequence" in capsys.readouterr().err
    records = tmp_path / "in.jsonl"
    records.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "prompt": "What does it do?", "sequence": "MKTAYIAK"},
                {"id": "b", "prompt": "Compare.", "sequences": ["MKV", "MSSK"]},
                {"id": "c", "prompt": "Bad.", "sequence": "MKZ*"},
            ]
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    code = main([*base, "--input", str(records), "--output", str(out), "--temperature", "0.7", "--seed", "1"])
    assert code == 0
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"a", "b", "c"}
    assert isinstance(rows["a"]["response"], str) and isinstance(rows["b"]["response"], str)
    assert "invalid character '*'" in rows["c"]["error"] and "response" not in rows["c"]
    assert "generate" in capsys.readouterr().err  # the tqdm bar


def test_generate_command_runs_a_plain_qwen3_export_with_the_sequence_in_the_prompt(tmp_path, capsys):
    from transformers import Qwen3ForCausalLM

    from protein_llm_nemo.cli import main
    from protein_llm_nemo.hf.processing import ProteinLLMProcessor
    from protein_llm_nemo.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    arch = tiny_spec("text").arch
    arch = type(arch)(**{**arch.to_dict(), "vocab_size": 151936, "tie_word_embeddings": True})
    torch.manual_seed(0)
    Qwen3ForCausalLM(arch.to_hf_config()).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    prompt = ProteinLLMProcessor(tokenizer, bridge="text")("Function?", proteins=["mktay"])
    assert "Protein sequence: MKTAY" in tokenizer.decode(prompt["input_ids"][0])
    assert "protein_sequences" not in prompt
    argv = ["generate", "--model", str(tmp_path), "--sequence", "MKTAY", "--prompt", "Function?"]
    assert main([*argv, "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.endswith("\n")
    assert main([*argv[:-4], "--sequence", "MKTAYB#", "--prompt", "x"]) == 2
    assert "invalid character '#' at position 7" in capsys.readouterr().err
