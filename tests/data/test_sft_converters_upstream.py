"""The SFT-text converters (ProteinLMDataset, ProtDescribe, Protein2Text-QA, Mol-Instructions) on rows laid
out as the files users download, and `find_sequence`, which must never keep a fragment of a damaged protein."""

import itertools
import json
from pathlib import Path

import pytest

from protein_llm_nemo.data import ReasonCounter
from protein_llm_nemo.data.converters import convert, get_converter
from protein_llm_nemo.data.converters._common import (
    NO_SEQUENCE,
    NON_RESIDUE_CHARACTERS,
    extract_sequence,
    find_sequence,
)

from .conftest import FIXTURES, SEQ_A, SEQ_B


def run(name, path, **options):
    counter = ReasonCounter()
    records = list(convert(name, path, counter, **options))
    counter.check(name)  # seen == kept + dropped: no item vanishes uncounted
    return records, counter


def materialize(fixture: str, dest: Path) -> Path:
    """Write a fixture without its '#' provenance header under the upstream file name ``dest``."""
    lines = (FIXTURES / fixture).read_text().splitlines(keepends=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("".join(itertools.dropwhile(lambda line: line.startswith("#"), lines)))
    return dest


def flat_file_sequence(fixture: str) -> str:
    lines = (FIXTURES / fixture).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("SQ "))
    return "".join("".join(line.split()) for line in lines[start + 1 :] if line.startswith("     "))


P0A186 = flat_file_sequence("swissprot_P0A186.txt")
# The 'Catalytic activity prediction' protein of the Mol-Instructions README (ECoT fixture too).
CATALYTIC_START = "MDKVAVAGFLPEELCASLSLSPSFRGNQIFQWIGKGVD"


# ---------------------------------------------------------------------------------------- find_sequence


def test_find_sequence_reads_every_upstream_slot():
    assert find_sequence(f"```\n{SEQ_A}\n```").sequence == SEQ_A
    spaced = f"Presented here is a sequence of amino acids in a protein: <seq> {' '.join(SEQ_B)} </seq>"
    found = find_sequence(spaced)
    assert found.sequence == SEQ_B
    assert found.remove_from(spaced) == "Presented here is a sequence of amino acids in a protein: "
    assert find_sequence(f"<seq>{' '.join(SEQ_B)}</seq>").sequence == SEQ_B
    # Free text: the run is set off by spaces or ASCII punctuation; the longest run wins.
    assert find_sequence(f"Which family does the protein {SEQ_B} belong to?").sequence == SEQ_B
    assert find_sequence(f"Sequence:{SEQ_B}. Compare with ({SEQ_A}).").sequence == SEQ_A  # 118 > 113
    assert find_sequence("no protein here").problem == NO_SEQUENCE


@pytest.mark.parametrize(
    "damaged",
    [
        f"```\n{SEQ_A[:40]}3{SEQ_A[40:]}\n```",  # a digit inside a fenced sequence
        f"```\n{SEQ_A[:40]}\u0410{SEQ_A[40:]}\n```",  # Cyrillic A, looks like a residue
        f"Sequence: {SEQ_A[:40]}7{SEQ_A[40:]}",  # a digit inside a free-text sequence
        f"Sequence: {SEQ_A[:40]}\u00e9{SEQ_A[40:]}",  # a non-ASCII letter
        f"Sequence: {SEQ_A[:40]}\u200b{SEQ_A[40:]}",  # a zero-width space
        f"<seq> {' '.join(SEQ_B[:30])} 1 {' '.join(SEQ_B[30:])} </seq>",
    ],
)
def test_find_sequence_rejects_a_damaged_sequence_instead_of_keeping_a_fragment(damaged):
    # The old extract_sequence returned the longest clean run here: a fragment of the protein.
    assert find_sequence(damaged).problem == NON_RESIDUE_CHARACTERS
    assert extract_sequence(damaged) is None


# -------------------------------------------------------------------------------------- ProteinLMDataset


def test_protein_lm_dataset_reads_the_upstream_subsets(tmp_path):
    folder = tmp_path / "sft"
    materialize("protein_lm_dataset_sft_uniprot_Function.json", folder / "sft_uniprot_Function.json")
    materialize(
        "protein_lm_dataset_sft_uniprot_Subunit_structure.json", folder / "sft_uniprot_Subunit structure.json"
    )
    materialize("protein_lm_dataset_enzyme_CoT.json", folder / "enzyme_CoT.json")
    records, counter = run("protein_lm_dataset", folder)
    by_task = {r.task: r for r in records}
    assert set(by_task) == {"function", "subunit_structure", "enzyme_cot"}
    assert (counter.seen, counter.kept, counter.emitted) == (3, 3, 3) and not counter.dropped
    function = by_task["function"]
    assert function.sequences == [P0A186]
    assert function.instruction == (
        "The sequence of the protein is as follows. Please analyze the sequence and describe the functions of "
        "this protein.\nPresented here is a sequence of amino acids in a protein:"
    )
    assert function.response.startswith(
        "The determined function(s) of the protein include(s): Component of the naphthalene dioxygenase"
    )
    assert "FUNCTION:" not in function.response
    assert "  " not in by_task["subunit_structure"].response
    assert by_task["subunit_structure"].id == "protein_lm_dataset:sft_uniprot_Subunit_structure:0"
    assert by_task["enzyme_cot"].sequence.startswith(CATALYTIC_START)
    assert "<seq>" not in by_task["enzyme_cot"].instruction
    assert all(" " not in r.sequence for r in records)


def test_protein_lm_dataset_counts_damaged_and_missing_sequences(tmp_path):
    path = tmp_path / "UniProt_Subunit_structure.jsonl"
    lines = [
        json.dumps({"instruction": "What is the subunit structure?", "input": f"Sequence: {SEQ_B}", "output": "Homodimer."}),
        "{broken",
        json.dumps({"instruction": "x", "input": "short", "output": "y"}),
        json.dumps({"instruction": "x", "input": f"<seq> {' '.join(SEQ_A[:50])} 2 {' '.join(SEQ_A[50:])} </seq>", "output": "y"}),
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    records, counter = run("protein_lm_dataset", path)
    assert len(records) == 1 and records[0].task == "subunit_structure"
    assert records[0].sequences == [SEQ_B] and records[0].instruction == "What is the subunit structure?"
    assert counter.dropped == {"invalid_json": 1, "no_sequence": 1, NON_RESIDUE_CHARACTERS: 1}


# ------------------------------------------------------------------------------------------- ProtDescribe


def test_protdescribe_reads_protst_columns(tmp_path):
    path = materialize("protdescribe_uniprot_sprot_filtered.tsv", tmp_path / "uniprot_sprot_filtered.tsv")
    records, counter = run("protdescribe", path)
    answers = {r.id: r.response for r in records}
    assert answers == {
        "protdescribe:NDOA_PSEU8:protein_name": "Naphthalene 1,2-dioxygenase system, ferredoxin component.",
        "protdescribe:NDOA_PSEU8:function": (
            "Component of the naphthalene dioxygenase (NDO) multicomponent enzyme system which catalyzes the "
            "incorporation of both atoms of molecular oxygen into naphthalene to form "
            "cis-(1R,2S)-dihydroxy-1,2-dihydronaphthalene. Functions as an intermediate electron transfer protein "
            "via a specific interaction with iron sulfur protein components (ISP) (DoxB and DoxD)."
        ),
        "protdescribe:NDOA_PSEU8:similarity": (
            "Belongs to the bacterial ring-hydroxylating dioxygenase ferredoxin component family."
        ),
        "protdescribe:LV469_HUMAN:protein_name": "Immunoglobulin lambda variable 4-69.",
    }
    assert {r.meta["entry_name"] for r in records} == {"NDOA_PSEU8", "LV469_HUMAN"}
    assert records[0].sequences == [P0A186] and records[-1].sequences == [SEQ_A]
    assert (counter.seen, counter.kept, counter.emitted) == (2, 2, 4)


def test_protdescribe_reads_a_uniprot_export_too(tmp_path):
    path = tmp_path / "uniprot_export.tsv"
    path.write_text(
        "Entry\tSequence\tProtein names\tFunction [CC]\tSubcellular location [CC]\tSequence similarities\n"
        f"P59773\t{SEQ_B}\tProtein X\tFUNCTION: Binds RNA. {{ECO:0000269|PubMed:123}}.\t\tBelongs to the X family.\n"
        f"Q1\t\tEmpty\t\t\t\n"
        f"Q2\t{SEQ_A}\t\t\t\t\n"
    )
    records, counter = run("protdescribe", path)
    assert {r.task: r.response for r in records} == {
        "protein_name": "Protein X.",
        "function": "Binds RNA.",
        "similarity": "Belongs to the X family.",
    }
    assert records[0].meta == {"accession": "P59773"}
    assert counter.dropped == {"missing_entry_or_sequence": 1, "no_annotation_fields": 1}
    assert (counter.seen, counter.kept, counter.emitted) == (3, 1, 3)


def test_protdescribe_missing_columns_name_the_accepted_headers(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("Name\tSeq\nX\tMKT\n")
    with pytest.raises(ValueError, match=r"bad\.tsv lacks column\(s\) \['EntryName or Entry', 'Sequence'\]"):
        run("protdescribe", path)


# ---------------------------------------------------------------------------------------- Protein2Text-QA


def test_protein2text_qa_reads_amino_seq_never_the_protein_name(tmp_path):
    path = materialize("protein2text_qa_sample_input.json", tmp_path / "sample_input.json")
    upstream = json.loads(path.read_text())
    records, counter = run("protein2text_qa", path)
    assert [r.sequence for r in records] == [item["amino_seq"] for item in upstream]
    assert not {r.sequence for r in records} & {item["protein"] for item in upstream}
    assert [r.id for r in records] == [
        "protein2text_qa:Q9H9D4_3:0",
        "protein2text_qa:Q9Y5R6_32:0",
        "protein2text_qa:Q9HC52_27:0",
    ]
    assert records[0].instruction == "Can a protein's genotype and phenotype be directly related?"
    assert all("<protein_sequence>" not in r.instruction for r in records)
    assert records[0].meta == {
        "item_id": "Q9H9D4_3",
        "accession": "Q9H9D4",
        "protein_name": "Zinc finger protein 408",
    }
    assert (counter.seen, counter.kept, counter.emitted) == (3, 3, 3)


def test_protein2text_qa_counts_items_and_pairs_apart(tmp_path):
    conversation = [
        {"from": "human", "value": "<protein_sequence>\nWhat role does this protein play?"},
        {"from": "gpt", "value": "It is part of an antibody light chain."},
        {"from": "human", "value": "Where?"},
        {"from": "gpt", "value": "Secreted."},
        {"from": "human", "value": "And then?"},
    ]
    items = [
        {
            "long_format_id": "A0A075B6H9_1",
            "id": "A0A075B6H9",
            "amino_seq": SEQ_A,
            "conversations": conversation,
        },
        # Only a name: the name must not become the protein.
        {"long_format_id": "P1_1", "protein": "Zinc finger protein 408", "conversations": conversation[:2]},
        {"long_format_id": "P2_1", "amino_seq": "M E E 1", "conversations": conversation[:2]},
        {"long_format_id": "P3_1", "sequence": SEQ_B, "conversations": []},
    ]
    (tmp_path / "qa.json").write_text(json.dumps(items))
    records, counter = run("protein2text_qa", tmp_path / "qa.json")
    assert [r.instruction for r in records] == ["What role does this protein play?", "Where?"]
    assert (counter.seen, counter.kept, counter.emitted) == (4, 1, 2)
    assert counter.dropped == {"no_sequence": 1, "sequence_not_residues": 1, "no_qa_pair": 1}
    assert counter.changed == {"unanswered_last_turn_skipped": 1}


# ---------------------------------------------------------------------------------------- Mol-Instructions

MOL_INSTRUCTIONS_FILES = ("catalytic_activity", "general_function", "protein_design", "protein_function")


def mol_instructions_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "Protein-oriented_Instructions"
    for task in MOL_INSTRUCTIONS_FILES:
        materialize(f"mol_instructions_{task}.json", folder / f"{task}.json")
    return folder


def test_mol_instructions_keeps_upstream_test_rows_out_by_default(tmp_path):
    records, counter = run("mol_instructions", mol_instructions_folder(tmp_path))
    # The README's functional-description row is labelled 'test' upstream: it must not reach training.
    assert not any(r.sequence.startswith("MKIVLASNNQGKLAELK") for r in records if r.sequences)
    assert counter.dropped == {"upstream_split_test": 1}
    assert [(r.task, r.meta["upstream_split"]) for r in records] == [
        ("catalytic_activity", "train"),
        ("general_function", "train"),
        ("protein_design", "train"),
        ("protein_function", None),
    ]
    assert counter.flagged == {"no_upstream_split": 1}
    by_task = {r.task: r for r in records}
    assert by_task["general_function"].meta["accession"] == "A0A849MGI6"
    assert len(by_task["general_function"].sequence) == 341  # metadata.seq_len upstream
    assert by_task["catalytic_activity"].sequence.startswith(CATALYTIC_START)
    design = by_task["protein_design"]
    assert design.sequences == [] and design.response.startswith("MSNELVLSREQVRRVDQRAIEAYG")
    assert (
        design.instruction.startswith("Design a protein sequence")
        and "\n1. The presence of Mg(2+)" in design.instruction
    )


def test_mol_instructions_split_option(tmp_path):
    folder = mol_instructions_folder(tmp_path)
    records, counter = run("mol_instructions", folder, split="test")
    assert [(r.task, r.meta["upstream_split"]) for r in records] == [("general_function", "test")]
    assert counter.dropped == {"upstream_split_train": 3, "upstream_split_missing": 1}
    records, counter = run("mol_instructions", folder, split="all")
    assert len(records) == 5 and not counter.dropped
    with pytest.raises(ValueError, match=r"split='dev' is not one of \['train', 'test', 'all'\]"):
        run("mol_instructions", folder, split="dev")
    assert get_converter("mol_instructions").options == ("split",)


def test_mol_instructions_rejects_damaged_sequences(tmp_path):
    folder = tmp_path / "Protein-oriented_Instructions"
    folder.mkdir()
    describe = (
        "Please examine the protein encoded by the amino acid sequence and describe its functional role."
    )
    items = [
        {"instruction": describe, "input": f"```\n{SEQ_A}\n```", "output": "An immunoglobulin V region.",
         "metadata": {"protein_accession": "A0A075B6H9", "split": "train"}},
        {"instruction": describe, "input": f"```\n{SEQ_A[:60]}8{SEQ_A[60:]}\n```", "output": "x",
         "metadata": {"split": "train"}},
        {"instruction": describe, "input": f"```\n{SEQ_A[:60]}\u00c4{SEQ_A[60:]}\n```", "output": "x",
         "metadata": {"split": "train"}},
        {"instruction": "Describe.", "input": "no protein here", "output": "x"},
        {"instruction": "only"},
    ]  # fmt: skip
    (folder / "protein_function.json").write_text(json.dumps(items))
    design = [
        {"instruction": "Design a protein.", "input": "1. It binds zinc.", "output": f"```\n{SEQ_B}\n```"},
        {"instruction": "Design a protein.", "input": "1. It binds zinc.", "output": f"```\n{SEQ_B[:30]}5{SEQ_B[30:]}\n```"},
    ]  # fmt: skip
    (folder / "protein_design.json").write_text(json.dumps(design))
    records, counter = run("mol_instructions", folder)
    assert [r.task for r in records] == ["protein_design", "protein_function"]
    assert records[0].response == SEQ_B and records[0].meta["target_sequence"] == SEQ_B
    assert records[1].sequences == [SEQ_A] and records[1].meta["accession"] == "A0A075B6H9"
    assert counter.dropped == {
        "non_residue_characters_in_input": 2,
        "non_residue_characters_in_output": 1,
        "no_sequence_in_input": 1,
        "missing_field": 1,
    }
