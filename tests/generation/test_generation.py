"""Generation on the megatron policy, every bridge, tiny models: greedy tokens equal the HF export's
`generate`, generation log-probs equal the training forward's, TP=2 / PP=2 / DP=2 equal one rank, a sample
alone equals the same sample in a batch, seeds reproduce, padded vocabulary rows are never sampled, the
bridge runs once per prompt, dropping finished rows changes nothing, bad input fails before any compute."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.tiny import TINY_ENCODER_DIM, TINY_TOKEN_IDS, built_in_bridges

BRIDGES = built_in_bridges()
SEED = 1234
NEW_TOKENS = 8


def _prompts(name: str):
    """Three prompts of different lengths (left padding matters): 1, 2 and 1 proteins."""
    from protein_llm_nemo.generation import Prompt
    from protein_llm_nemo.testing.tiny import tiny_bridge_config

    config = tiny_bridge_config(name)
    ids = TINY_TOKEN_IDS
    group = [ids.start] + [ids.embed] * config.num_slots + [ids.end]
    generator = torch.Generator().manual_seed(11)
    prompts = []
    for texts, lengths in (
        ([[5, 6], [7]], [6]),
        ([[9], [10, 11], [12, 13, 14]], [9, 4]),
        ([[20, 21, 22, 23]], []),
    ):
        tokens = list(texts[0])
        for piece in texts[1:]:
            tokens += (group if config.uses_encoder else [300, 301, 302]) + piece
        if config.uses_encoder and lengths:
            embeddings = torch.randn(len(lengths), max(lengths), TINY_ENCODER_DIM, generator=generator) * 3
            mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
            prompts.append(Prompt(tokens, embeddings=embeddings * mask[..., None], mask=mask))
        else:
            prompts.append(Prompt(tokens))
    return prompts


def _greedy():
    from protein_llm_nemo.generation import SamplingParams

    return SamplingParams(temperature=0, max_new_tokens=NEW_TOKENS, eos_token_ids=())


def _sampled(seed: int = 5, n: int = 2):
    from protein_llm_nemo.generation import SamplingParams

    return SamplingParams(
        temperature=1.0, top_p=0.9, top_k=50, n=n, seed=seed, max_new_tokens=6, eos_token_ids=()
    )


def _init(layout: tuple[int, int] = (1, 1)) -> None:
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(
        ParallelConfig(tensor_model_parallel_size=layout[0], pipeline_model_parallel_size=layout[1]),
        seed=SEED,
    )


def _model(name: str, params=None):
    from protein_llm_nemo.models.parallel_weights import load_full_parameters
    from protein_llm_nemo.testing.tiny import build_tiny_model, from_portable, set_gates, tiny_bridge_config

    model = build_tiny_model(tiny_bridge_config(name), SEED)
    if params is not None:
        load_full_parameters(model, from_portable(params))
        return model
    set_gates(model, 0.5)  # the cross-attention path matters
    if model.protein_token_embeddings is not None:  # the boundary-token table differs from the LLM rows
        with torch.no_grad():
            table = model.protein_token_embeddings.weight
            table.add_(torch.randn(table.shape, generator=torch.Generator().manual_seed(SEED)))
    return model


def _as_lists(rollouts) -> list[tuple]:
    return [(s.prompt_index, s.sample_index, s.token_ids, s.logprobs, s.stop_reason) for s in rollouts]


def _training_logprobs(model, prompt, sample) -> list[float]:
    """The training forward's log-probabilities of a completion: minus the model's per-token loss."""
    tokens = torch.tensor([list(prompt.input_ids) + sample.token_ids[:-1]])
    labels = torch.tensor([list(prompt.input_ids[1:]) + sample.token_ids])
    loss_mask = torch.zeros_like(labels, dtype=torch.float)
    loss_mask[0, len(prompt.input_ids) - 1 :] = 1.0
    kwargs = {}
    if prompt.embeddings is not None:
        kwargs = dict(protein_embeddings=prompt.embeddings, protein_mask=prompt.mask)
    positions = torch.arange(tokens.shape[1])[None]
    with torch.no_grad():
        losses = model(tokens, positions, None, labels=labels, loss_mask=loss_mask, **kwargs)
    return (-losses[0, len(prompt.input_ids) - 1 :]).tolist()


# -- rank bodies -------------------------------------------------------------------------------------------
def _reference_body(rank: int, world_size: int, root: str) -> dict:
    from protein_llm_nemo.conversion import ProteinLLMSpec, export_language_model, export_protein_llm
    from protein_llm_nemo.generation import generate
    from protein_llm_nemo.testing.tiny import tiny_arch, tiny_bridge_config, to_portable

    _init()
    out = {}
    for name in BRIDGES:
        model = _model(name)
        prompts = _prompts(name)
        greedy = generate(model, prompts, _greedy())
        training = [_training_logprobs(model, prompts[s.prompt_index], s) for s in greedy]
        sampled = generate(model, prompts, _sampled())
        out[name] = {
            "greedy": _as_lists(greedy),
            "training_logprobs": training,
            "sampled": _as_lists(sampled),
            "sampled_alone": _as_lists(generate(model, [prompts[1]], _sampled())),
            "sampled_again": _as_lists(generate(model, prompts, _sampled())),
            "sampled_other_seed": _as_lists(generate(model, prompts, _sampled(seed=6))),
            "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        }
        spec = ProteinLLMSpec(tiny_arch(), tiny_bridge_config(name), TINY_TOKEN_IDS)
        if spec.bridge_config.uses_encoder:
            export_protein_llm(model, spec, Path(root) / name, tokenizer=None)
        else:
            export_language_model(model, spec.arch, Path(root) / name, tokenizer=None)
    return to_portable(out)


def _layout_body(rank: int, world_size: int, layout: tuple[int, int], params: dict) -> dict:
    from protein_llm_nemo.generation import generate

    _init(layout)
    out = {}
    for name in BRIDGES:
        model = _model(name, params[name])
        prompts = _prompts(name)
        out[name] = {
            "greedy": _as_lists(generate(model, prompts, _greedy())),
            "local": _as_lists(generate(model, prompts, _greedy(), gather=False)),
            "sampled": _as_lists(generate(model, prompts, _sampled())),
        }
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("generation")
    (result,) = run_distributed(_reference_body, world_size=1, args=(str(root),))
    return result, root


def _max_logprob_diff(a: list[tuple], b: list[tuple]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra[3], rb[3], strict=True))


# -- exactness -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BRIDGES)
def test_greedy_tokens_equal_the_hf_exports_generate(reference, name):
    from transformers import AutoModelForCausalLM

    result, root = reference
    model = AutoModelForCausalLM.from_pretrained(root / name).eval()  # no trust_remote_code
    prompts = _prompts(name)
    width = max(len(p.input_ids) for p in prompts)
    input_ids = torch.zeros(len(prompts), width, dtype=torch.long)
    attention = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt.input_ids) :] = torch.tensor(prompt.input_ids)
        attention[row, width - len(prompt.input_ids) :] = 1
    kwargs = {}
    embedded = [p for p in prompts if p.embeddings is not None]
    if embedded:
        longest = max(p.embeddings.shape[1] for p in embedded)
        kwargs["protein_embeddings"] = torch.cat(
            [
                torch.nn.functional.pad(p.embeddings, (0, 0, 0, longest - p.embeddings.shape[1]))
                for p in embedded
            ]
        )
        kwargs["protein_mask"] = torch.cat(
            [torch.nn.functional.pad(p.mask, (0, longest - p.mask.shape[1])) for p in embedded]
        )
    out = model.generate(
        input_ids,
        attention_mask=attention,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        suppress_tokens=list(TINY_TOKEN_IDS.all),  # input-only tokens, never sampled by ours either
        pad_token_id=0,
        **kwargs,
    )
    hf_tokens = out[:, width:].tolist()
    ours = [row[2] for row in result[name]["greedy"]]
    assert ours == hf_tokens


@pytest.mark.parametrize("name", BRIDGES)
def test_generation_logprobs_equal_the_training_forward(reference, name):
    result, _ = reference
    diffs = [
        abs(g - t)
        for row, training in zip(result[name]["greedy"], result[name]["training_logprobs"], strict=True)
        for g, t in zip(row[3], training, strict=True)
    ]
    token_mult_prob_error = sum(math.exp(d) for d in diffs) / len(diffs)
    assert len(diffs) == 3 * NEW_TOKENS and token_mult_prob_error <= 1 + 1e-5, token_mult_prob_error


@pytest.mark.parametrize("name", BRIDGES)
def test_a_sample_alone_equals_it_in_a_batch_and_seeds_reproduce(reference, name):
    result = reference[0][name]
    batched = [row for row in result["sampled"] if row[0] == 1]
    alone = [(1, *row[1:]) for row in result["sampled_alone"]]
    assert [r[2] for r in batched] == [r[2] for r in alone] and _max_logprob_diff(batched, alone) < 1e-5
    assert [r[2] for r in result["sampled"]] == [r[2] for r in result["sampled_again"]]
    assert [r[2] for r in result["sampled"]] != [r[2] for r in result["sampled_other_seed"]]
    assert len(result["sampled"]) == 6  # n = 2 per prompt
    assert result["sampled"][0][2] != result["sampled"][1][2]  # a prompt's two samples differ


@pytest.mark.parametrize("layout", [(2, 1), (1, 2)], ids=["tp2", "pp2"])
def test_tensor_and_pipeline_parallel_generate_the_same_tokens(reference, layout):
    result, _ = reference
    params = {name: result[name]["params"] for name in BRIDGES}
    ranks = run_distributed(_layout_body, world_size=2, args=(layout, params))
    for name in BRIDGES:
        for rank in ranks:
            greedy = rank[name]["greedy"]
            assert [r[2] for r in greedy] == [r[2] for r in result[name]["greedy"]], (name, layout)
            assert _max_logprob_diff(greedy, result[name]["greedy"]) < 1e-5
            assert [r[2] for r in rank[name]["sampled"]] == [r[2] for r in result[name]["sampled"]]


def test_data_parallel_ranks_generate_disjoint_shares(reference):
    result, _ = reference
    params = {name: result[name]["params"] for name in BRIDGES}
    ranks = run_distributed(_layout_body, world_size=2, args=((1, 1), params))
    for name in BRIDGES:
        shares = [{(r[0], r[1]) for r in rank[name]["local"]} for rank in ranks]
        assert shares[0] and shares[1] and not shares[0] & shares[1]
        assert shares[0] | shares[1] == {(i, 0) for i in range(3)}
        for rank in ranks:  # gathered: the whole batch, as one rank generates it
            assert [r[2] for r in rank[name]["greedy"]] == [r[2] for r in result[name]["greedy"]]


# -- the fast path and the guards ---------------------------------------------------------------------------
def _fast_path_body(rank: int, world_size: int) -> dict:
    import dataclasses

    import protein_llm_nemo.generation.engine as engine
    from protein_llm_nemo.generation import Prompt, SamplingParams, generate
    from protein_llm_nemo.models.protein_llm import build_protein_llm
    from protein_llm_nemo.testing.tiny import tiny_arch, tiny_bridge_config

    _init()
    out: dict = {}
    # the bridge runs once per prefill batch, on each prompt's proteins once, whatever n is
    for name in ("mlp", "flamingo"):
        model = _model(name)
        calls: list[int] = []
        model.bridge.register_forward_hook(
            lambda m, args, output, calls=calls: calls.append(int(args[0].shape[0]))
        )
        rollouts = generate(model, _prompts(name), dataclasses.replace(_sampled(), n=3))
        out[f"{name}_bridge_calls"] = calls
        out[f"{name}_samples"] = len(rollouts)
    # finished rows leave the KV cache: the outputs are those of a run that never drops them
    model = _model("perceiver")
    prompts = _prompts("perceiver")
    first = generate(model, prompts, _greedy())
    eos = first[1].token_ids[2]  # row 1 ends at its 3rd token, the others go on (or end too)
    params = dataclasses.replace(_greedy(), eos_token_ids=(eos,))
    dropped = generate(model, prompts, params)
    engine.COMPACT_FRACTION = 2.0  # never drop
    kept = generate(model, prompts, params)
    engine.COMPACT_FRACTION = 0.25
    out["dropped"], out["kept"] = _as_lists(dropped), _as_lists(kept)
    # padded vocabulary rows and protein placeholders are never sampled, however large their logits
    arch = dataclasses.replace(tiny_arch(), vocab_size=1003)  # megatron pads it to 1024
    model = build_protein_llm(arch, tiny_bridge_config("mlp"), protein_token_ids=TINY_TOKEN_IDS).eval()
    with torch.no_grad():
        weight = model.language_model.output_layer.weight
        weight[1003:] = weight[:21] * 50  # padded rows copy real rows, 50x larger: they would win
        weight[list(TINY_TOKEN_IDS.all)] = weight[3:6] * 40
    prompt = _prompts("mlp")[0]
    sampled = generate(model, [prompt], dataclasses.replace(_sampled(), n=4, top_p=1.0, top_k=0))
    greedy = generate(model, [prompt], _greedy())
    out["vocab_tokens"] = [t for s in [*sampled, *greedy] for t in s.token_ids]
    # bad input: a clear error before any compute
    model = _model("mlp")
    ok = _prompts("mlp")[0]
    cases = {
        "empty": lambda: generate(model, [Prompt([])], _greedy()),
        "too_long": lambda: generate(model, [ok], dataclasses.replace(_greedy(), max_new_tokens=100_000)),
        "max_new_tokens": lambda: SamplingParams(max_new_tokens=0),
        "temperature": lambda: SamplingParams(temperature=-0.5),
        "n": lambda: SamplingParams(n=0),
        "residues": lambda: generate(
            model, [Prompt(ok.input_ids, sequences=["MKT1LV"])], _greedy(), encoder=object()
        ),
        "protein_count": lambda: generate(model, [Prompt(ok.input_ids)], _greedy()),
        "no_prompts": lambda: generate(model, [], _greedy()),
    }
    errors = {}
    for case, call in cases.items():
        try:
            call()
            errors[case] = None
        except (ValueError, TypeError) as error:
            errors[case] = f"{type(error).__name__}: {error}"
    out["errors"] = errors
    return out


@pytest.fixture(scope="module")
def fast_path():
    (result,) = run_distributed(_fast_path_body, world_size=1)
    return result


def test_the_bridge_runs_once_per_prompt_whatever_n(fast_path):
    # one prefill batch of three prompts holding 1 + 2 + 0 proteins, three samples each
    assert fast_path["mlp_bridge_calls"] == [3] and fast_path["mlp_samples"] == 9
    assert fast_path["flamingo_bridge_calls"] == [3] and fast_path["flamingo_samples"] == 9


def test_dropping_finished_rows_changes_no_output(fast_path):
    dropped, kept = fast_path["dropped"], fast_path["kept"]
    assert [r[2] for r in dropped] == [r[2] for r in kept] and _max_logprob_diff(dropped, kept) < 1e-5
    assert dropped[1][4] == "eos" and len(dropped[1][2]) == 3
    assert any(r[4] == "length" for r in dropped)  # the batch went on after row 1 had finished


def test_padded_vocabulary_rows_and_protein_placeholders_are_never_sampled(fast_path):
    tokens = fast_path["vocab_tokens"]
    assert len(tokens) == 4 * 6 + NEW_TOKENS
    assert max(tokens) < 1003 and not set(tokens) & set(TINY_TOKEN_IDS.all)  # ids 1000-1002: placeholders


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "empty prompt"),
        ("too_long", "exceed the model's"),
        ("max_new_tokens", "max_new_tokens must be >= 1"),
        ("temperature", "temperature must be >= 0"),
        ("n", r"n \(samples per prompt\) must be >= 1"),
        ("residues", "invalid|residue|character"),
        ("protein_count", "1 protein groups in input_ids but 0 proteins given"),
        ("no_prompts", "no prompts"),
    ],
)
def test_bad_input_is_a_clear_error_before_any_compute(fast_path, case, message):
    import re

    error = fast_path["errors"][case]
    assert error is not None and re.search(message, error, flags=re.I), error
