"""The reward interface: RewardResult, the task registry (lazy, shared, overridable), dispatch by task."""

from __future__ import annotations

import dataclasses
import time

import pytest

from protein_llm_nemo.rewards import (
    NoRewardError,
    Reward,
    RewardConfig,
    RewardResult,
    configure_reward,
    get_reward,
    has_reward,
    list_rewards,
    missing_ground_truth,
    register_reward,
    score,
)
from protein_llm_nemo.rewards.multiple_choice import MultipleChoiceReward
from protein_llm_nemo.rewards.ppi import PpiReward

from .conftest import make_record

VERIFIABLE_TASKS = [
    "binary_property",
    "go_bp",
    "go_cc",
    "go_mf",
    "multiple_choice",
    "ppi",
    "stability",
    "structure_quality",
]


def test_list_rewards_names_every_verifiable_task():
    rewards = list_rewards()
    assert sorted(rewards) == VERIFIABLE_TASKS
    assert rewards["go_mf"] == rewards["go_bp"] == rewards["go_cc"] == "GoTermReward"


def test_score_dispatches_on_the_record_task():
    assert score(make_record("ppi", interacts=True), "Yes").parsed_answer is True
    assert score(make_record("multiple_choice", answer_index=1, n_options=2), "A").parsed_answer == 1


@pytest.mark.parametrize("task", ["function", "description", "protein_qa", "ssl_text"])
def test_free_text_tasks_have_no_reward(task):
    assert not has_reward(task)
    with pytest.raises(NoRewardError, match="deliberately no reward"):
        score(make_record(task), "It is a kinase.")


def test_unknown_task_is_a_clear_error():
    with pytest.raises(
        NoRewardError, match="'go_xx'.*rewards exist for binary_property, go_bp, go_cc, go_mf"
    ):
        get_reward("go_xx")


def test_defaults_are_built_once_and_shared():
    assert get_reward("ppi") is get_reward("ppi")
    assert isinstance(get_reward("ppi"), PpiReward)


def test_options_build_a_separate_instance():
    custom = get_reward("ppi", config=RewardConfig(format_weight=0.0))
    assert custom is not get_reward("ppi")
    record = make_record("ppi", interacts=True)
    assert custom.score(record, "They interact: yes").total == 1.0
    assert score(record, "They interact: yes").total == pytest.approx(0.9)  # the default is untouched


def test_configure_reward_changes_what_score_uses():
    configure_reward("multiple_choice", config=RewardConfig(format_weight=0.0))
    assert score(make_record("multiple_choice", answer_index=2, n_options=4), "The answer is B").total == 1.0


def test_register_reward_rejects_a_second_class_for_a_task():
    with pytest.raises(ValueError, match="already has reward"):

        @register_reward("ppi")
        class OtherPpi(PpiReward):
            pass

    with pytest.raises(ValueError):
        register_reward()


def test_registered_classes_know_their_tasks():
    assert MultipleChoiceReward.tasks == ("multiple_choice",)
    assert issubclass(MultipleChoiceReward, Reward)


def test_result_total_must_be_in_unit_interval():
    with pytest.raises(ValueError):
        RewardResult(1.5, {}, None, True)
    with pytest.raises(ValueError):
        RewardResult(float("nan"), {}, None, True)
    result = RewardResult.failure("ambiguous", options=2.0)
    assert (result.total, result.format_ok, result.parsed_answer) == (0.0, False, None)
    assert result.components == {"format": 0.0, "ambiguous": 1.0, "options": 2.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.total = 1.0  # type: ignore[misc]


def test_format_bonus_is_bounded():
    with pytest.raises(ValueError, match="format_weight"):
        RewardConfig(format_weight=0.11)
    assert RewardConfig().total(1.0, 1.0) == 1.0
    assert RewardConfig().total(0.0, 1.0) == pytest.approx(0.1)


def test_completion_length_limit_is_exact():
    record = make_record("ppi", interacts=True)
    reward = get_reward("ppi", config=RewardConfig(max_completion_chars=100))
    assert reward.score(record, "Yes" + " " * 97).total == 1.0
    assert reward.score(record, "Yes" + " " * 98).components["overlong"] == 1.0


RECORDS = {
    "stability": make_record("stability", ddg=-1.0),
    "ppi": make_record("ppi", interacts=True),
    "structure_quality": make_record("structure_quality", plddt=85.0, category="high"),
    "multiple_choice": make_record("multiple_choice", answer_index=2, n_options=4),
}
# Worst cases for regular expressions, just under the length limit: each must stay linear.
PATHOLOGICAL = [
    "1" * 9_990,
    "1," * 4_995,
    "-" * 9_990,
    "<think>" * 1_427,
    "option " * 1_427,
    "A, " * 3_330,
    "1 x 10^" * 1_427,
    "not a " * 1_665,
    "well-" * 1_998,
    "(" * 9_990,
    "9" * 400 + "e" + "9" * 400,
]


@pytest.mark.parametrize("task", sorted(RECORDS))
def test_pathological_completions_are_fast(task):
    reward, record = get_reward(task), RECORDS[task]
    start = time.perf_counter()
    for completion in PATHOLOGICAL:
        assert 0.0 <= reward.score(record, completion).total <= 1.0
    # About 20 ms on one core; the bound only catches quadratic or exponential parsing.
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (make_record("stability", ddg=-1.0), None),
        (make_record("stability"), "meta.ddg"),
        (make_record("stability", ddg="n/a"), "meta.ddg"),
        (make_record("ppi", interacts=False), None),
        (make_record("ppi", interacts="yes"), "meta.interacts"),
        (make_record("structure_quality", plddt=72.5), None),
        (make_record("structure_quality", plddt=172.5), "meta.plddt"),
        (make_record("multiple_choice", answer_index=3, n_options=4), None),
        (make_record("multiple_choice", answer_index=5, n_options=4), "meta.answer_index"),
        (make_record("multiple_choice", answer_index=1), "meta.n_options"),
        (make_record("go_cc", go_ids=["GO:0005615"]), None),
        (make_record("go_cc", go_ids=[]), "meta.go_ids"),
    ],
)
def test_missing_ground_truth(record, problem, monkeypatch):
    # Checked on the class: no GO ontology is needed (none is configured here).
    monkeypatch.delenv("PROTEIN_LLM_GO_OBO", raising=False)
    assert missing_ground_truth(record) == problem


def test_missing_ground_truth_of_a_task_without_reward():
    with pytest.raises(NoRewardError):
        missing_ground_truth(make_record("function"))
