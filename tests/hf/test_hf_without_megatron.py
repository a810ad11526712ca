"""The HF side (`protein_llm_nemo.hf` and every bridge's twin) imports and runs without megatron-core: a
user who only serves an export with plain `transformers` does not need it. Checked in a subprocess where
any `import megatron...` fails."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BODY = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoMegatron(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "megatron" or name.startswith("megatron."):
                raise ImportError(f"megatron is not installed here ({name})")
            return None

    sys.meta_path.insert(0, NoMegatron())

    import tempfile
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    import protein_llm_nemo  # registers the Auto classes
    from protein_llm_nemo.bridges import get_bridge_config_class
    from protein_llm_nemo.hf.configuration import ProteinLLMConfig
    from protein_llm_nemo.testing.tiny import TINY_TOKEN_IDS, built_in_bridges, tiny_bridge_config

    text = Qwen3Config(
        vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
    )
    ids = TINY_TOKEN_IDS
    for name in built_in_bridges():
        bridge = tiny_bridge_config(name)
        config = ProteinLLMConfig(
            text_config=text.to_dict(), bridge=name, bridge_config=bridge.to_dict(),
            protein_token_ids=list(ids.all),
        )
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
        prompt = [11, 12]
        kwargs = {}
        if bridge.uses_encoder:
            prompt += [ids.start] + [ids.embed] * bridge.num_slots + [ids.end]
            kwargs = dict(protein_embeddings=torch.randn(1, 5, bridge.encoder_dim), protein_mask=torch.ones(1, 5, dtype=torch.bool))
        prompt += [13]
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            again = AutoModelForCausalLM.from_pretrained(folder).eval()
        out = again.generate(torch.tensor([prompt]), max_new_tokens=3, do_sample=False, **kwargs)
        assert out.shape == (1, len(prompt) + 3), (name, out.shape)
        print(name, "ok")
    print("megatron imported:", any(m.startswith("megatron") for m in sys.modules))
    """
)


def test_hf_side_imports_and_generates_without_megatron_core():
    result = subprocess.run(
        [sys.executable, "-c", BODY], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert {"mlp ok", "perceiver ok", "flamingo ok", "text ok"} <= set(lines)
    assert lines[-1] == "megatron imported: False"
