"""Hand-offs between stages: SSL -> SFT (the SFT model starts from the SSL run's language model), and a
training checkpoint -> HF export whose `transformers` logits equal the trained megatron model's."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.sft import tiny_config, write_records


def _ssl_records(path: Path) -> str:
    rng = random.Random(1)
    words = ["the", "kinase", "binds", "ATP", "in", "the", "membrane", "of", "a", "cell"]
    with open(path, "w") as handle:
        for i in range(8):
            text = " ".join(rng.choice(words) for _ in range(24))
            row = {"id": f"d{i}", "sequences": [], "instruction": "", "response": text, "task": "ssl_text"}
            handle.write(json.dumps({**row, "source": "test"}) + "\n")
    return str(path)


def _ssl_body(rank: int, world_size: int, records: str, run_dir: str) -> None:
    from protein_llm_nemo.training import CheckpointConfig, DataConfig, SSLConfig, TrainConfig
    from protein_llm_nemo.training.ssl import run_ssl

    run_ssl(
        SSLConfig(
            data=DataConfig(
                train_path=records, cache_dir=f"{run_dir}/indexed", seq_length=32, micro_batch_size=2,
                global_batch_size=2, packing=False,
            ),
            train=TrainConfig(max_steps=2, progress_bar=False),
            checkpoint=CheckpointConfig(dir=run_dir),
        )
    )  # fmt: skip


def _sft_from_ssl_body(rank: int, world_size: int, data_dir: str, ssl_run: str) -> dict:
    import torch.distributed.checkpoint as dcp

    from protein_llm_nemo.training.sft import setup_sft

    config = tiny_config(data_dir, checkpoint__load_language_model_from=ssl_run)
    session = setup_sft(config)
    model = session.model
    step_dir = Path(ssl_run) / (Path(ssl_run) / "latest").read_text().strip()
    key = "language_model.embedding.word_embeddings.weight"
    stored = {key: torch.empty_like(model.language_model.embedding.word_embeddings.weight)}
    dcp.load(stored, storage_reader=dcp.FileSystemReader(str(step_dir)), no_dist=True)
    live = model.language_model.embedding.word_embeddings.weight.detach()
    ids = list(model.protein_token_ids.all)
    return {
        "embedding_equal": torch.equal(live, stored[key]),
        "token_rows_equal": torch.equal(model.protein_token_embeddings.weight.detach(), stored[key][ids]),
        "fresh_init_differs": not torch.equal(live, torch.zeros_like(live)),
    }


def test_sft_starts_from_the_ssl_language_model(tmp_path):
    ssl_run = tmp_path / "ssl"
    run_distributed(_ssl_body, world_size=1, args=(_ssl_records(tmp_path / "ssl.jsonl"), str(ssl_run)))
    assert (
        json.loads(
            (ssl_run / (ssl_run / "latest").read_text().strip() / "protein_llm_checkpoint.json").read_text()
        )["extra"]["protein_llm"]["bridge"]["name"]
        == "text"
    )
    data = tmp_path / "data"
    data.mkdir()
    write_records(data / "train.jsonl", 8, seed=0)
    write_records(data / "valid.jsonl", 4, seed=1)
    (result,) = run_distributed(_sft_from_ssl_body, world_size=1, args=(str(data), str(ssl_run)))
    assert result == {"embedding_equal": True, "token_rows_equal": True, "fresh_init_differs": True}


def _sft_and_export_body(rank: int, world_size: int, data_dir: str, run_dir: str, out: str) -> float:
    from protein_llm_nemo.conversion.checkpoints import load_protein_llm_checkpoint
    from protein_llm_nemo.conversion.protein_llm_export import export_protein_llm_checkpoint
    from protein_llm_nemo.hf import ProteinLLMForCausalLM
    from protein_llm_nemo.training.checkpoint import latest_checkpoint
    from protein_llm_nemo.training.sft import run_sft

    config = tiny_config(data_dir, checkpoint__dir=run_dir, train__max_steps=2)
    run_sft(config)
    step_dir = latest_checkpoint(run_dir)
    export_protein_llm_checkpoint(step_dir, out)
    megatron_model, spec, _ = load_protein_llm_checkpoint(step_dir)
    hf_model = ProteinLLMForCausalLM.from_pretrained(out).eval()
    ids = spec.protein_token_ids
    slots = spec.bridge_config.num_slots
    input_ids = torch.tensor(
        [[151644, 872, 198, ids.start, *[ids.embed] * slots, ids.end, 3555, 374, 432, 30]]
    )
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(1, 11, spec.bridge_config.encoder_dim, generator=generator)
    mask = torch.ones(1, 11, dtype=torch.bool)
    positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
    with torch.no_grad():
        expected = megatron_model(
            input_ids, positions, None, protein_embeddings=embeddings, protein_mask=mask
        )
        got = hf_model(input_ids=input_ids, protein_embeddings=embeddings, protein_mask=mask).logits
    vocab = spec.arch.vocab_size
    return float((got[..., :vocab] - expected[..., :vocab]).abs().max())


def test_training_checkpoint_exports_to_transformers(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_records(data / "train.jsonl", 8, seed=0)
    write_records(data / "valid.jsonl", 4, seed=1)
    out = tmp_path / "hf"
    (diff,) = run_distributed(
        _sft_and_export_body, world_size=1, args=(str(data), str(tmp_path / "run"), str(out))
    )
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert diff < 1e-4
