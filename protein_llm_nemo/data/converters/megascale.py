"""MegaScale stability (Tsuboyama et al. 2023, ``Tsuboyama2023_Dataset2_Dataset3_*.csv``).

Columns used: ``name``, ``aa_seq`` (mutant sequence), ``WT_name``, ``mut_type`` (``wt`` / ``A23K`` /
``ins``/``del`` ...), ``ddG_ML`` (kcal/mol; ``-`` when unreliable), optionally ``dG_ML``. A record asks for
the mutation's stability change; ``meta["ddg"]`` is the reward's ground truth. Sign convention of the
dataset: positive ddG = stabilising.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.files import read_lines
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

SOURCE = "megascale"


def _float(value: str | None) -> float | None:
    try:
        out = float(value) if value not in (None, "", "-", "NA", "nan") else None
    except ValueError:
        return None
    return out if out is not None and math.isfinite(out) else None


@register_converter(SOURCE, "MegaScale (Tsuboyama 2023) stability CSV with ddG_ML")
def convert(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    # A row that is not UTF-8 is one counted skip (`invalid_utf8`), not the end of the file.
    reader = csv.DictReader(line for _, line in read_lines(path, counter))
    missing = {"aa_seq", "mut_type", "ddG_ML"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"{SOURCE}: {path} lacks column(s) {sorted(missing)}")
    for index, row in enumerate(reader):
        counter.seen += 1
        mut = (row.get("mut_type") or "").strip()
        if not mut or mut.lower() == "wt":
            counter.drop("wild_type_row")
            continue
        ddg = _float(row.get("ddG_ML"))
        if ddg is None:
            counter.drop("missing_ddg")
            continue
        seq = (row.get("aa_seq") or "").strip()
        if not seq:
            counter.drop("missing_sequence")
            continue
        wt = (row.get("WT_name") or "").strip()
        verdict = "stabilising" if ddG_positive(ddg) else "destabilising"
        counter.keep()
        yield ProteinRecord(
            id=f"{SOURCE}:{row.get('name') or index}",
            sequences=[seq],
            instruction=(
                f"This protein carries the mutation {mut} relative to its wild type. "
                "Predict the change in folding stability (ddG, kcal/mol)."
            ),
            response=f"The predicted ddG is {ddg:.2f} kcal/mol ({verdict}).",
            task="stability",
            source=SOURCE,
            meta={"ddg": ddg, "mutation": mut, "wt_name": wt, "dg": _float(row.get("dG_ML"))},
        )


def ddG_positive(ddg: float) -> bool:  # noqa: N802 - upstream column vocabulary
    return ddg > 0
