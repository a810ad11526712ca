"""GO term reward: propagated set F1 on the GO fixture (hand-computed closures), cap, unknown/obsolete ids,
adversarial completions, the shared ancestor cache."""

from __future__ import annotations

import gc
import time

import pytest

from protein_llm_nemo.data.go.ontology import GeneOntology
from protein_llm_nemo.rewards import RewardInputError, configure_reward, get_reward, score
from protein_llm_nemo.rewards.go_closure import _CACHE, ROOTS, closure_for
from protein_llm_nemo.rewards.go_terms import GoRewardConfig, GoTermReward, parse_go_ids, set_f1

from .conftest import GO_SAMPLE, INJECTION, OBSOLETE_MF, OVERLONG, SEQUENCE, make_record

GPCR = "GO:0004930"  # closure in MF: itself, 0004888, 0038023, 0060089 (root 0003674 excluded)
OLFACTORY = "GO:0004984"  # siblings with GPCR under 0004888: 3 of 4 closure terms shared
TRANSMEMBRANE_RECEPTOR = "GO:0004888"
BINDING = "GO:0005488"
MF_ROOT = "GO:0003674"
GPCR_PATHWAY = "GO:0007186"  # biological process; GPCR activity is part_of it
EXTRACELLULAR_SPACE = "GO:0005615"  # is_a 0044421, which is part_of 0005576 (extracellular region)
EXTRACELLULAR_REGION = "GO:0005576"
MF_TERMS = ["GO:0003823", "GO:0004888", GPCR, OLFACTORY, BINDING, "GO:0005549", "GO:0038023", "GO:0060089"]


def gpcr_record():
    return make_record("go_mf", go_ids=[GPCR], all_go_ids=[GPCR], aspect="MFO")


@pytest.fixture
def reward(ontology) -> GoTermReward:
    return configure_reward("go_mf", ontology=ontology)


def total(f1: float, format_ok: bool) -> float:
    return 0.9 * f1 + (0.1 if format_ok else 0.0)


@pytest.mark.parametrize(
    ("completion", "expected", "f1"),
    [
        # The reference answer's shape: names and ids.
        (
            f"This protein is annotated with: G protein-coupled receptor activity ({GPCR}).",
            total(1, True),
            1.0,
        ),
        # A sibling: 3 of 4 propagated terms shared, P = R = 3/4.
        (OLFACTORY, total(0.75, True), 0.75),
        # The parent: P = 3/3, R = 3/4, F1 = 6/7.
        (TRANSMEMBRANE_RECEPTOR, total(6 / 7, True), 6 / 7),
        # Right term plus a wrong one: P = 4/5, R = 1, F1 = 8/9.
        (f"{GPCR}, {BINDING}", total(8 / 9, True), 8 / 9),
        # A wrong branch: nothing shared.
        (BINDING, total(0, True), 0.0),
        # The namespace root is true of every protein and pays nothing.
        (MF_ROOT, total(0, True), 0.0),
    ],
)
def test_hand_computed_scores(reward, completion, expected, f1):
    result = score(gpcr_record(), completion)
    assert result.total == pytest.approx(expected)
    assert result.components["f1"] == pytest.approx(f1)
    assert result.format_ok


def test_part_of_propagates_within_the_namespace(reward):
    record = make_record("go_cc", go_ids=[EXTRACELLULAR_SPACE], all_go_ids=[EXTRACELLULAR_SPACE])
    result = score(record, EXTRACELLULAR_REGION)  # reached from the truth only through part_of
    # truth {0005615, 0044421, 0005576}, prediction {0005576}: P = 1, R = 1/3, F1 = 1/2
    assert result.components["recall"] == pytest.approx(1 / 3)
    assert result.total == pytest.approx(total(0.5, True))


def test_part_of_does_not_cross_namespaces(reward):
    # GPCR activity (MF) is part_of the GPCR pathway (BP): a go_bp record gains nothing from the MF term.
    record = make_record("go_bp", go_ids=[GPCR_PATHWAY], all_go_ids=[GPCR_PATHWAY])
    result = score(record, GPCR)
    assert result.components["other_namespace_ids"] == 1
    assert result.components["f1"] == 0.0
    assert result.total == 0.0  # and no format bonus: the id is of another namespace
    assert reward.closure.closure(GPCR) == {GPCR, TRANSMEMBRANE_RECEPTOR, "GO:0038023", "GO:0060089"}


def test_truth_is_all_go_ids_when_present(reward):
    # go_ids holds the leaves the answer lists; all_go_ids every annotated term (here one more branch).
    record = make_record("go_mf", go_ids=[GPCR], all_go_ids=[GPCR, BINDING])
    result = score(record, GPCR)
    assert result.components["true_terms"] == 5
    assert result.components["recall"] == pytest.approx(4 / 5)


def test_unknown_obsolete_and_other_namespace_ids_are_dropped_and_counted(reward):
    completion = f"{GPCR} GO:1234567 {OBSOLETE_MF} {GPCR_PATHWAY}"
    result = score(gpcr_record(), completion)
    assert result.components["unknown_ids"] == 1
    assert result.components["obsolete_ids"] == 1
    assert result.components["other_namespace_ids"] == 1
    assert result.components["f1"] == 1.0  # dropped ids are not false positives...
    assert result.total == pytest.approx(0.9)  # ...but they cost the format bonus
    assert result.parsed_answer == (GPCR,)


@pytest.mark.parametrize(
    "completion",
    ["GO:00049301", "GO:000493", "go:0004930", "GO_0004930", "XGO:0004930", "GO:0004930x", "GO: 0004930"],
)
def test_malformed_ids_are_not_ids(reward, completion):
    result = score(gpcr_record(), completion)
    assert result.total == 0.0
    assert not result.format_ok
    assert result.components["no_answer"] == 1.0


def flat_ontology(children: int) -> GeneOntology:
    """A molecular-function root with `children` unrelated child terms GO:1000000, GO:1000001 ..."""
    onto = GeneOntology()
    onto.names[MF_ROOT], onto.namespaces[MF_ROOT] = "molecular_function", "molecular_function"
    for index in range(children):
        term = f"GO:{1_000_000 + index}"
        onto.names[term], onto.namespaces[term] = f"function {index}", "molecular_function"
        onto.parents[term] = {MF_ROOT}
    return onto


def test_listing_hundreds_of_ids_is_capped_and_penalised():
    reward = GoTermReward(flat_ontology(300))
    record = make_record("go_mf", go_ids=["GO:1000000"], all_go_ids=["GO:1000000"])
    spam = " ".join(f"GO:{1_000_000 + i}" for i in range(300))
    result = reward.score(record, spam)
    # 30 scored (the true one among them: P = 1/30 before the penalty), 270 over the cap as false positives.
    assert result.components["over_cap_ids"] == 270
    assert result.components["precision"] == pytest.approx(1 / 300)
    assert result.total == pytest.approx(0.9 * 2 / 301)  # F1 = 2 (1/300) / (1/300 + 1); no format bonus
    # The true id beyond the cap is never seen.
    reversed_spam = " ".join(f"GO:{1_000_000 + i}" for i in reversed(range(300)))
    assert reward.score(record, reversed_spam).total == 0.0


def test_thirty_ids_are_within_the_cap_but_precision_pays_for_them():
    reward = GoTermReward(flat_ontology(300))
    record = make_record("go_mf", go_ids=["GO:1000000"], all_go_ids=["GO:1000000"])
    result = reward.score(record, " ".join(f"GO:{1_000_000 + i}" for i in range(30)))
    assert result.components["over_cap_ids"] == 0
    assert result.total == pytest.approx(0.9 * 2 / 31 + 0.1)  # P = 1/30, R = 1


def test_custom_cap():
    reward = GoTermReward(flat_ontology(10), GoRewardConfig(max_terms=2))
    record = make_record("go_mf", go_ids=["GO:1000000"], all_go_ids=["GO:1000000"])
    result = reward.score(record, "GO:1000000 GO:1000001 GO:1000002")
    # P = 1 / (2 scored + 1 over the cap), R = 1: F1 = 1/2
    assert result.total == pytest.approx(0.9 * 0.5)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        # The whole (tiny) molecular-function branch: every true term, at half precision.
        (" ".join(MF_TERMS), total(2 / 3, True)),
        # The same id a hundred times is one prediction.
        (" ".join([GPCR] * 100), 1.0),
        ("", 0.0),
        ("I do not know the GO terms of this protein.", 0.0),
        ("G protein-coupled receptor activity", 0.0),  # names without ids are not parsed
        (SEQUENCE, 0.0),
        (f"{SEQUENCE}\n{GPCR}", 1.0),  # the echoed protein neither helps nor hurts
        (INJECTION, 0.0),
        (f"{INJECTION} {BINDING}", total(0, True)),
        (f"<think>{GPCR}</think> {BINDING}", total(0, True)),  # only the answer after thinking counts
        (f"Candidates: {BINDING}. Final answer: {GPCR}", 1.0),  # the last answer marker wins
        (OVERLONG, 0.0),
    ],
)
def test_adversarial_completions(reward, completion, expected):
    assert score(gpcr_record(), completion).total == pytest.approx(expected)


def test_overlong_completion_is_refused_fast(reward):
    start = time.perf_counter()
    result = score(gpcr_record(), f"{GPCR} " * 20_000)
    assert time.perf_counter() - start < 0.05
    assert result.components["overlong"] == 1.0 and result.total == 0.0


def test_record_without_ground_truth_is_a_data_error(reward):
    with pytest.raises(RewardInputError, match="all_go_ids"):
        score(make_record("go_mf"), GPCR)


def test_set_f1_edge_cases():
    assert set_f1(set(), set()) == (1.0, 1.0, 1.0)
    assert set_f1({"a"}, set()) == (0.0, 0.0, 0.0)
    assert set_f1(set(), {"a"}) == (0.0, 0.0, 0.0)
    assert set_f1(set(), set(), extra_false_positives=3)[2] == 0.0


def test_parse_keeps_first_appearance_order():
    assert parse_go_ids(f"{BINDING}; {GPCR} and again {BINDING}.") == [BINDING, GPCR]


def test_closures_are_cached_per_ontology(ontology, monkeypatch):
    first, second = GoTermReward(ontology), GoTermReward(ontology)
    assert first.closure is second.closure is closure_for(ontology)
    first.score(gpcr_record(), f"{OLFACTORY} {BINDING}")
    calls = []
    original = GeneOntology.ancestors
    monkeypatch.setattr(
        GeneOntology, "ancestors", lambda self, term: calls.append(term) or original(self, term)
    )
    second.score(gpcr_record(), f"{OLFACTORY} {BINDING}")
    assert calls == []  # every closure came from the cache
    assert not (first.closure.closure(OLFACTORY) & ROOTS)


def test_closure_cache_releases_dropped_ontologies():
    onto = GeneOntology.from_obo(GO_SAMPLE)
    closure_for(onto)
    key = id(onto)
    assert key in _CACHE
    del onto
    gc.collect()
    assert key not in _CACHE


def test_default_ontology_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("PROTEIN_LLM_GO_OBO", raising=False)
    with pytest.raises(ValueError, match="PROTEIN_LLM_GO_OBO"):
        get_reward("go_mf")
    monkeypatch.setenv("PROTEIN_LLM_GO_OBO", str(GO_SAMPLE))
    assert score(gpcr_record(), GPCR).total == 1.0
    assert get_reward("go_bp") is get_reward("go_cc")  # one instance (one ontology) for the three tasks


def test_config_ontology_path():
    reward = GoTermReward(config=GoRewardConfig(obo=str(GO_SAMPLE)))
    assert reward.score(gpcr_record(), GPCR).total == 1.0
    with pytest.raises(ValueError, match="max_terms"):
        GoRewardConfig(max_terms=0)
