"""Structured-source converters against rows of the upstream projects' own files: STRING links (ppi), GO
annotations and CAFA ground truth (gaf, cafa_tsv, goasp), predicted structures (structure_plddt) and the
Swiss-Prot flat file. Each fixture's header names the file its rows come from."""

import gzip
import shutil
import subprocess

import pytest

from protein_llm_nemo.data import ReasonCounter
from protein_llm_nemo.data.converters import convert
from protein_llm_nemo.data.go import GeneOntology

from .conftest import SEQ_A, SEQ_B

STRING_DETAILED = "ppi_string_9606.protein.links.detailed.v11.0.txt"
POSITIVE_PAIRS = {
    ("9606.ENSP00000002165", "9606.ENSP00000485444"): 900.0,
    ("9606.ENSP00000003084", "9606.ENSP00000351777"): 965.0,
}


def run(name, path, **options):
    counter = ReasonCounter()
    records = list(convert(name, path, counter, **options))
    counter.check(name)  # every item kept or dropped with a reason
    return records, counter


def fasta_sequences(fixtures) -> list[str]:
    """Real Swiss-Prot sequences (uniprot_sample.fasta, then SEQ_B): stand-ins for other proteins' sequences
    where only the identifiers matter to the test."""
    entries = fixtures.joinpath("uniprot_sample.fasta").read_text().split(">")[1:]
    return ["".join(entry.splitlines()[1:]) for entry in entries] + [SEQ_B]


def string_fasta(tmp_path, fixtures, ids):
    """A STRING protein.sequences-style FASTA (``>9606.ENSP...``) with stand-in sequences."""
    sequences = dict(zip(ids, fasta_sequences(fixtures), strict=False))
    path = tmp_path / "protein.sequences.fa"
    path.write_text("".join(f">{ident}\n{seq}\n" for ident, seq in sequences.items()))
    return path, sequences


def string_rows(fixtures):
    return [line.split() for line in fixtures.joinpath(STRING_DETAILED).read_text().splitlines()[8:]]


@pytest.fixture
def string_proteins(tmp_path, fixtures):
    ids = [p for pair in POSITIVE_PAIRS for p in pair] + ["9606.ENSP00000000233"]
    return string_fasta(tmp_path, fixtures, ids)


# --- STRING protein-protein interactions ------------------------------------------------------------------


def test_string_detailed_takes_combined_score_from_its_header_column(fixtures, string_proteins):
    fasta, sequences = string_proteins
    records, counter = run("ppi", fixtures / STRING_DETAILED, fasta=fasta)
    positives = {(r.meta["protein_a"], r.meta["protein_b"]): r for r in records if r.meta["interacts"]}
    # combined_score is column 10: the 965 and 900 links are positives (column 3, neighborhood, is 0)
    assert {pair: r.meta["score"] for pair, r in positives.items()} == POSITIVE_PAIRS
    assert all(r.response == "Yes, they interact." for r in positives.values())
    # 158-223: between the thresholds; the two B-A mirror rows repeat links already read
    assert counter.dropped == {"ppi_ambiguous_score": 4, "ppi_duplicate_pair": 2}
    assert counter.seen == 8 and counter.kept == 2


def test_string_lists_a_pair_once_in_canonical_order(tmp_path, fixtures, string_proteins):
    fasta, sequences = string_proteins
    records, _ = run("ppi", fixtures / STRING_DETAILED, fasta=fasta, negatives_per_positive=0)
    assert len({r.id for r in records}) == len(records) == 2
    for record in records:
        a, b = record.meta["protein_a"], record.meta["protein_b"]
        assert a < b and record.id == f"ppi:{a}:{b}" and record.sequences == [sequences[a], sequences[b]]
    # The same links listed B-A only give the same records (ids and sequence order): exact deduplication and
    # the homology split see one pair whichever orientation a file holds.
    header = fixtures.joinpath(STRING_DETAILED).read_text().splitlines()[7]
    flipped = tmp_path / "flipped.txt"
    flipped.write_text("\n".join([header] + [" ".join([r[1], r[0], *r[2:]]) for r in string_rows(fixtures)]))
    again, _ = run("ppi", flipped, fasta=fasta, negatives_per_positive=0)
    assert [(r.id, r.sequences) for r in again] == [(r.id, r.sequences) for r in records]


def test_string_negatives_are_sampled_absent_pairs_seeded(fixtures, string_proteins):
    fasta, sequences = string_proteins
    records, counter = run("ppi", fixtures / STRING_DETAILED, fasta=fasta, seed=3)
    negatives = [r for r in records if not r.meta["interacts"]]
    assert len(negatives) == 2  # negatives_per_positive defaults to 1.0: one per positive
    listed = {tuple(sorted(row[:2])) for row in string_rows(fixtures)}
    for record in negatives:
        pair = (record.meta["protein_a"], record.meta["protein_b"])
        assert pair not in listed and set(pair) <= set(sequences) and pair[0] < pair[1]
        assert record.meta["label_from"] == "sampled_absent_pair" and record.response.startswith("No")
    assert counter.emitted == len(records) == 4 and counter.flagged["ppi_sampled_negative"] == 2
    same, _ = run("ppi", fixtures / STRING_DETAILED, fasta=fasta, seed=3)
    assert [r.id for r in same] == [r.id for r in records]
    # the ratio is an option; the command line passes it as text
    more, _ = run("ppi", fixtures / STRING_DETAILED, fasta=fasta, negatives_per_positive="2")
    assert sum(not r.meta["interacts"] for r in more) == 4


def test_string_negatives_shortfall_is_flagged(tmp_path, fixtures):
    # only the two proteins of one positive have sequences: no absent pair to sample
    fasta, _ = string_fasta(tmp_path, fixtures, ["9606.ENSP00000002165", "9606.ENSP00000485444"])
    records, counter = run("ppi", fixtures / STRING_DETAILED, fasta=fasta)
    assert [r.meta["interacts"] for r in records] == [True]
    assert counter.dropped["ppi_missing_sequence"] == 1
    assert counter.flagged == {"ppi_negatives_short": 1}


def test_string_plain_links_layout(tmp_path, fixtures, string_proteins):
    fasta, _ = string_proteins
    plain = tmp_path / "9606.protein.links.v11.0.txt"
    rows = [f"{r[0]} {r[1]} {r[-1]}" for r in string_rows(fixtures)]
    plain.write_text("\n".join(["protein1 protein2 combined_score", *rows]) + "\n")
    records, counter = run("ppi", plain, fasta=fasta, negatives_per_positive=0)
    assert {(r.meta["protein_a"], r.meta["protein_b"]): r.meta["score"] for r in records} == POSITIVE_PAIRS
    assert counter.dropped == {"ppi_ambiguous_score": 4, "ppi_duplicate_pair": 2}


def test_string_file_without_a_score_column_names_the_problem(tmp_path, fixtures, string_proteins):
    fasta, _ = string_proteins
    path = tmp_path / "links.txt"
    path.write_text("protein1 protein2 experimental\n9606.A 9606.B 900\n")
    with pytest.raises(ValueError, match=r"links.txt, line 1: header .* no 'combined_score'"):
        run("ppi", path, fasta=fasta)


# --- GO annotations and CAFA ground truth -----------------------------------------------------------------


def test_cafa_evaluator_two_column_ground_truth_takes_aspects_from_the_ontology(tmp_path, fixtures):
    fasta = tmp_path / "targets.fasta"
    fasta.write_text(f">T100900005305\n{SEQ_A}\n>T100900010085\n{SEQ_B}\n")  # stand-in sequences
    records, counter = run(
        "cafa_tsv",
        fixtures / "cafa_evaluator_ground_truth.tsv",
        fasta=fasta,
        obo=fixtures / "cafa_go_subset.obo",
    )
    assert [r.id for r in records] == ["cafa:T100900010085:go_bp"]  # biological_process, from the OBO
    assert records[0].meta["go_ids"] == ["GO:0046777"]  # its parent GO:0006468 is implied
    assert records[0].meta["all_go_ids"] == ["GO:0006468", "GO:0046777"]
    # GO:0033234 (left out of the OBO subset) and the DisProt term IDPO:00024 are not in the ontology
    assert counter.dropped == {"cafa_term_not_in_ontology": 2}
    assert (counter.seen, counter.kept, counter.emitted) == (4, 2, 1)


def test_cafa5_three_columns_with_header(tmp_path, fixtures):
    tsv = tmp_path / "train_terms.tsv"
    tsv.write_text(
        "EntryID\tterm\taspect\nA0A075B6H9\tGO:0005886\tCCO\nA0A075B6H9\tbad\tCCO\nZZZ\tGO:0005886\tCCO\n"
        "P59773\tGO:0005886\tMFO\n"
    )
    records, counter = run(
        "cafa_tsv", tsv, fasta=fixtures / "uniprot_sample.fasta", obo=fixtures / "go_sample.obo"
    )
    # plasma membrane is cellular_component in the OBO: the MFO column loses, and is flagged
    assert [r.id for r in records] == ["cafa:A0A075B6H9:go_cc", "cafa:P59773:go_cc"]
    assert counter.dropped == {"cafa_term_not_in_ontology": 1, "no_sequence_for_accession": 1}
    assert counter.flagged == {"cafa_aspect_differs_from_ontology": 1}


def test_namespace_of_a_metastudent_term_comes_from_its_root():
    onto = GeneOntology(
        names={"GO:0005524": "ATP binding", "GO:0003674": "molecular_function"},
        namespaces={"GO:0003674": "molecular_function"},
        parents={"GO:0005524": {"GO:0003674"}},
    )
    assert onto.namespace_of("GO:0005524") == "molecular_function"
    assert onto.namespace_of("GO:9999999") is None


def test_gaf_with_real_goa_lines(fixtures):
    records, counter = run(
        "gaf",
        fixtures / "goa_human_sample.gaf",
        fasta=fixtures / "uniprot_sample.fasta",
        obo=fixtures / "go_sample.obo",
    )
    assert {r.task for r in records} <= {"go_mf", "go_bp", "go_cc"}
    cc = next(r for r in records if r.id == "gaf:A0A075B6H9:go_cc")
    assert "plasma membrane (GO:0005886)" in cc.response
    assert set(cc.meta["go_ids"]) <= set(cc.meta["all_go_ids"])
    # items are annotation lines: several lines make one (protein, aspect) record
    assert counter.emitted == len(records) > 4 and counter.kept > counter.emitted


def test_go_leaves_drop_ancestors(fixtures):
    onto = GeneOntology.from_obo(fixtures / "go_sample.obo")
    assert onto.name("GO:0005886") == "plasma membrane"
    assert onto.leaves({"GO:0005886", "GO:0016020"}) == ["GO:0005886"]  # membrane is an ancestor


@pytest.mark.skipif(shutil.which("makeblastdb") is None, reason="ncbi-blast+ not installed")
def test_goasp_layout_through_blastdb(tmp_path):
    root = tmp_path / "dataset_201401"
    (root / "MFO").mkdir(parents=True)
    (root / "nameMapping.txt").write_text(
        "GO:0003674\tmolecular_function\nGO:0005524\tATP binding\nGO:0000166\tnucleotide binding\n"
    )
    (root / "goGraph.txt").write_text("GO:0005524\tGO:0000166\t1\tis_a\nGO:0000166\tGO:0003674\t1\tis_a\n")
    (root / "MFO" / "goasp_annot.dat").write_text(
        "C6DJ78\tGO:0000166\tGO:0005524\tGO:0005524\nQ58380\tGO:9999999\n"
    )
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">C6DJ78|GO:0000166,GO:0005524\n{SEQ_A}\n>Q58380|GO:9999999\n{SEQ_B}\n")
    subprocess.run(
        ["makeblastdb", "-in", str(fasta), "-dbtype", "prot", "-out", str(root / "MFO" / "goasp.fasta")],
        check=True,
        capture_output=True,
    )
    records, counter = run("goasp", root, aspects="MFO", progress=False)
    assert len(records) == 1
    assert records[0].meta["go_ids"] == ["GO:0005524"]  # the ancestor GO:0000166 is implied
    assert records[0].response.endswith("ATP binding (GO:0005524).")
    assert records[0].sequence == SEQ_A
    assert counter.dropped == {"no_named_go_term": 1}


# --- predicted structures (pLDDT) -------------------------------------------------------------------------

AF_PDB = "structure_plddt_AF-A0A075B6Y3-F1-model_v1.pdb"
ESMFOLD_PDB = "structure_plddt_esmfold_0001_design.pdb"
ESMFOLD_FRACTION_PDB = "structure_plddt_esmfold_0001_design_fraction.pdb"
COLABFOLD_CIF = "structure_plddt_colabfold_model_1.cif"


def structures(tmp_path, fixtures, *names, gz=False):
    folder = tmp_path / "structures"
    folder.mkdir(exist_ok=True)
    for name in names:
        data = fixtures.joinpath(name).read_bytes()
        if gz:
            folder.joinpath(name + ".gz").write_bytes(gzip.compress(data))
        else:
            folder.joinpath(name).write_bytes(data)
    return folder


def by_name(records):
    return {r.id.split(":", 1)[1]: r for r in records}


def test_alphafold_db_pdb_reads_ca_b_factors(tmp_path, fixtures):
    records, counter = run("structure_plddt", structures(tmp_path, fixtures, AF_PDB))
    (record,) = records
    assert record.id == "structure_plddt:structure_plddt_AF-A0A075B6Y3-F1-model_v1"
    assert record.sequence == "GYSS"
    assert record.meta["plddt"] == pytest.approx((58.38 + 61.87 + 73.26 + 76.84) / 4, abs=1e-3)
    assert record.meta["category"] == "medium" and not counter.changed


def test_esmfold_fraction_scale_is_rescaled_per_file(tmp_path, fixtures):
    folder = structures(tmp_path, fixtures, ESMFOLD_PDB, ESMFOLD_FRACTION_PDB)
    records, counter = run("structure_plddt", folder)
    found = by_name(records)
    percent = found["structure_plddt_esmfold_0001_design"].meta
    fraction = found["structure_plddt_esmfold_0001_design_fraction"].meta
    assert percent["plddt"] == pytest.approx((75.73 + 83.25 + 91.15) / 3, abs=1e-3)
    assert fraction["plddt"] == pytest.approx((0.76 + 0.83 + 0.91) / 3 * 100, abs=1e-3)  # 0-1 file, x100
    assert percent["category"] == fraction["category"] == "high"
    assert counter.changed == {"plddt_rescaled_from_fraction": 1}


def test_gzipped_pdb_and_mmcif_are_read(tmp_path, fixtures):
    structures(tmp_path, fixtures, AF_PDB, COLABFOLD_CIF, gz=True)
    folder = structures(tmp_path, fixtures, COLABFOLD_CIF)
    records, counter = run("structure_plddt", folder)
    found = by_name(records)
    assert set(found) == {"structure_plddt_AF-A0A075B6Y3-F1-model_v1", "structure_plddt_colabfold_model_1"}
    assert found["structure_plddt_AF-A0A075B6Y3-F1-model_v1"].sequence == "GYSS"
    cif = found["structure_plddt_colabfold_model_1"]
    assert cif.sequence == "CPS" and cif.meta["plddt"] == pytest.approx((94.36 + 93.57 + 93.77) / 3, abs=1e-3)
    # the .cif and .cif.gz copies of one model are two files, two items
    assert counter.seen == 3 and counter.emitted == 3
    single, _ = run("structure_plddt", folder / (COLABFOLD_CIF + ".gz"))
    assert single[0].meta == cif.meta


def test_out_of_range_or_unreadable_structures_are_counted(tmp_path, fixtures):
    folder = tmp_path / "structures"
    folder.mkdir()
    # An AF line with its CA B-factor set to 140.00 (not a pLDDT: e.g. an experimental B-factor)
    lines = fixtures.joinpath(AF_PDB).read_text().splitlines(keepends=True)
    lines = [
        line[:60] + "140.00" + line[66:] if line.startswith("ATOM      2  CA") else line for line in lines
    ]
    folder.joinpath("experimental.pdb").write_text("".join(lines))
    folder.joinpath("broken.pdb.gz").write_bytes(b"not gzip data")
    folder.joinpath("empty.cif").write_text("data_x\n#\n")
    records, counter = run("structure_plddt", folder)
    assert records == []
    assert counter.dropped == {
        "plddt_out_of_range": 1,
        "unreadable_structure_file": 1,
        "structure_without_ca_atoms": 1,
    }


def test_structure_plddt_table(tmp_path):
    table = tmp_path / "plddt.csv"
    table.write_text(f"id,sequence,plddt\np1,{SEQ_A},87.5\np2,{SEQ_B},abc\np3,{SEQ_B},140\n")
    records, counter = run("structure_plddt", table)
    assert records[0].meta == {"plddt": 87.5, "category": "high"}
    assert counter.dropped == {"bad_plddt": 1, "plddt_out_of_range": 1}


# --- Swiss-Prot flat file and FASTA -----------------------------------------------------------------------


@pytest.fixture
def flat_file(tmp_path, fixtures):
    """The multi-entry fixture without its '**' citation lines: pure UniProt flat-file text."""
    lines = fixtures.joinpath("swissprot_multi_entry.txt").read_text().splitlines(keepends=True)
    path = tmp_path / "uniprot_sprot.dat"
    path.write_text("".join(line for line in lines if not line.startswith("**")))
    return path


def test_corrupt_entries_are_counted_and_reading_goes_on(flat_file, fixtures):
    records, counter = run("swissprot_flat", flat_file)
    # P68308 (bad SQ line) and P39896 (no // line) are skipped; P04439 after them is still read
    assert sorted({r.meta["accession"] for r in records}) == ["P04439", "P0A186"]
    assert counter.dropped == {"unparsable_flat_entry": 1, "truncated_flat_entry": 1}
    assert (counter.seen, counter.kept) == (4, 2)
    with_comments, _ = run("swissprot_flat", fixtures / "swissprot_multi_entry.txt")
    assert [r.id for r in with_comments] == [r.id for r in records]


def test_repeated_comments_make_one_record_with_a_unique_id(flat_file):
    records, counter = run("swissprot_flat", flat_file)
    assert len({r.id for r in records}) == len(records)
    (function,) = [r for r in records if r.id == "swissprot:P04439:function"]
    text = function.response
    assert text.startswith("Antigen-presenting major histocompatibility complex class I")
    # all 12 FUNCTION comments (general, then one per allele), in file order
    alleles = ["A*01:01", "A*02:01", "A*03:01", "A*11:01", "A*23:01", "A*24:02", "A*26:01", "A*29:02"]
    positions = [text.index(f"Allele {allele}:") for allele in alleles + ["A*32:01", "A*68:01", "A*74:01"]]
    assert positions == sorted(positions)
    assert counter.changed["merged_repeated_comment_topic"] == 11


def test_hyphen_line_wraps_are_joined(flat_file):
    records, counter = run("swissprot_flat", flat_file)
    functions = {r.meta["accession"]: r.response for r in records if r.task == "function"}
    hla = functions["P04439"]
    assert "SARS-CoV-2 N/nucleoprotein" in hla and "SARS- CoV" not in hla
    assert "at the C-terminal anchors" in hla and "C- terminal" not in hla
    assert "allele-specific binding motifs" in hla
    assert "cis-(1R,2S)-dihydroxy-1,2-dihydronaphthalene" in functions["P0A186"]
    assert counter.changed["joined_hyphen_line_wrap"] >= 4


def test_hyphen_join_keeps_word_ends_and_dashes():
    from protein_llm_nemo.data.converters.swissprot import join_hyphen_wraps

    lines = [
        "CC   -!- FUNCTION: Binds the N-\n",
        "CC       and C-terminal domains of the SARS-\n",
        "CC       CoV-2 spike; residues 1 -\n",
        "CC       20 form a helix.\n",
    ]
    joined, joins = join_hyphen_wraps(lines)
    assert joins == 1
    assert joined == [
        "CC   -!- FUNCTION: Binds the N-\n",
        "CC       and C-terminal domains of the SARS-CoV-2 spike; residues 1 -\n",
        "CC       20 form a helix.\n",
    ]


def test_swissprot_flat_real_record(fixtures):
    records, counter = run("swissprot_flat", fixtures / "swissprot_P0A186.txt")
    by_task = {r.task: r for r in records}
    assert set(by_task) >= {"function", "protein_name", "organism"}
    assert by_task["function"].response.startswith("Component of the naphthalene dioxygenase")
    assert "{ECO" not in by_task["function"].response
    assert "GO:0051537" in by_task["function"].meta["go_ids"]
    assert by_task["function"].sequence.startswith("M") and counter.seen == 1


def test_swissprot_fasta_real_headers(fixtures):
    records, counter = run("swissprot_fasta", fixtures / "uniprot_sample.fasta")
    assert counter.seen == 4 and counter.emitted == len(records)
    first = [r for r in records if r.meta["accession"] == "A0A075B6H9"]
    assert {r.task: r.response for r in first} == {
        "protein_name": "Immunoglobulin lambda variable 4-69.",
        "organism": "This protein comes from Homo sapiens.",
        "gene_name": "The gene name is IGLV4-69.",
    }
    assert first[0].sequence == SEQ_A
