import json

import pytest

from protein_llm_nemo.data import ReasonCounter
from protein_llm_nemo.data.converters import convert, get_converter, list_converters

from .conftest import SEQ_A, SEQ_B


def run(name, path, **options):
    counter = ReasonCounter()
    return list(convert(name, path, counter, **options)), counter


def test_registry_lists_every_source_and_rejects_unknown_options(tmp_path):
    names = set(list_converters())
    assert {
        "mol_instructions", "swissprot_flat", "swissprot_fasta", "protein_lm_dataset", "swissprot_clap",
        "protdescribe", "protein2text_qa", "gaf", "cafa_tsv", "goasp", "megascale", "structure_plddt", "ppi",
        "proteinlmbench", "biotext",
    } <= names  # fmt: skip
    with pytest.raises(KeyError, match="unknown converter"):
        get_converter("nope")
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(TypeError, match="accepts options"):
        convert("mol_instructions", tmp_path / "x.json", ReasonCounter(), fasta="y")


def test_swissprot_clap(tmp_path):
    (tmp_path / "protein_sequence.txt").write_text(f"P1\n{SEQ_A}\nP2\n{SEQ_B}\n")
    (tmp_path / "text_sequence.txt").write_text("P1\nAn immunoglobulin V region.\nP3\nOrphan text.\n")
    records, counter = run("swissprot_clap", tmp_path)
    assert [(r.id, r.response) for r in records] == [("swissprot_clap:P1", "An immunoglobulin V region.")]
    assert counter.dropped == {"no_text_for_protein": 1, "no_protein_for_text": 1}


def test_megascale_csv(tmp_path):
    path = tmp_path / "Tsuboyama2023_Dataset2_Dataset3_20230416.csv"
    path.write_text(
        "name,dna_seq,log10_K50_t,deltaG,ddG_ML,dG_ML,Stabilizing_mut,aa_seq,mut_type,WT_name,WT_cluster\n"
        f"1A0N.pdb,ATG,1.0,1.2,-,1.2,-,{SEQ_B},wt,1A0N.pdb,1\n"
        f"1A0N.pdb_A12K,ATG,1.0,0.4,-0.83,0.4,False,{SEQ_B},A12K,1A0N.pdb,1\n"
        f"1A0N.pdb_L13P,ATG,1.0,0.4,-,0.4,False,{SEQ_B},L13P,1A0N.pdb,1\n"
    )
    records, counter = run("megascale", path)
    assert len(records) == 1 and records[0].meta["ddg"] == -0.83
    assert "-0.83 kcal/mol (destabilising)" in records[0].response
    assert counter.dropped == {"wild_type_row": 1, "missing_ddg": 1}


def test_proteinlmbench(tmp_path):
    items = [
        {
            "question": f"Which family does the protein {SEQ_B} belong to?",
            "options": ["option 1: kinase", "option 2: ribosomal protein", "option 3: globin"],
            "answer": "option 2",
        },
        {"question": "Which residue is aromatic?", "options": {"A": "Gly", "B": "Trp"}, "answer": "B"},
        {"question": "No answer", "options": ["a", "b"], "answer": "option 7"},
    ]
    (tmp_path / "ProteinLMBench.json").write_text(json.dumps(items))
    records, counter = run("proteinlmbench", tmp_path / "ProteinLMBench.json")
    assert records[0].sequences == [SEQ_B] and SEQ_B not in records[0].instruction
    assert records[0].response == "Option 2: ribosomal protein" and records[0].meta["answer_index"] == 2
    assert records[1].sequences == [] and records[1].meta["answer_index"] == 2
    assert counter.dropped == {"unresolvable_answer": 1}


def test_biotext_obo_and_text(tmp_path, fixtures):
    records, counter = run("biotext", fixtures / "go_sample.obo")
    pm = next(r for r in records if r.id == "biotext:GO:0005886")
    assert pm.response.startswith(
        "plasma membrane (GO:0005886, cellular component): The membrane surrounding a cell"
    )
    assert all(r.task == "ssl_text" and r.sequences == [] for r in records)
    (tmp_path / "a.txt").write_text("Para one\nline two.\n\n\nPara two.\n")
    records, _ = run("biotext", tmp_path / "a.txt")
    assert [r.response for r in records] == ["Para one line two.", "Para two."]
