"""``vmt data check``: is a downloaded PASCAL-Context or NYUD-v2 multi-task folder complete and readable?

Broken or partial downloads of the public PASCAL_MT / NYUD_MT archives are the most frequent
problem users of this benchmark line report. The check reads the folder with the very loaders
training uses (so "passes" means "training will not trip over it"): ids per split against the
expected counts, per task presence, and per sample the loader's own decoding, which checks
readability, size against the image and value ranges. By default it decodes an evenly spaced
sample of each split; ``deep`` decodes every file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
from .pascal import FolderDataset, read_ids
from .registry import folder_datasets

CHECKED_SPLITS = ("train", "val")  # the splits of the public releases


@dataclass
class CheckReport:
    """Per (split, task): ids listed, files present, samples decoded, samples bad; and the problems found."""

    dataset: str
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        head = ["split", "task", "ids", "present", "decoded", "bad"]
        lines = [head] + [[str(r[k]) for k in ("split", "task", "ids", "present", "decoded", "bad")] for r in self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                         for line in lines)


def detect_dataset(root: Path) -> str:
    """The registered folder dataset whose layout ``root`` has."""
    for name, cls in folder_datasets().items():
        if cls.detect(root):
            return name
    known = ", ".join(f"{cls.__name__} ({cls.MARKER}/)" for cls in folder_datasets().values())
    raise DataError(f"{root}: not a folder of any known layout: {known}")


def _sample(ids: list[str], deep: bool, num: int) -> list[str]:
    if deep or len(ids) <= num:
        return ids
    step = len(ids) / num
    return [ids[int(i * step)] for i in range(num)]


def check_dataset(root: str | Path, dataset: str | None = None, deep: bool = False, sample: int = 50) -> CheckReport:
    """Check every split and task of the folder; never raises for problems in the data, only lists them."""
    if sample < 1:  # 0 would check nothing and say "no problem found"
        raise ConfigError(f"--sample must be at least 1 (or use --deep), got {sample}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    dataset = dataset or detect_dataset(root)
    if dataset not in folder_datasets():
        raise DataError(f"unknown dataset {dataset!r}; choose from {', '.join(folder_datasets())}")
    loader = folder_datasets()[dataset]
    report = CheckReport(dataset)
    for split in CHECKED_SPLITS:
        probe = loader.__new__(loader)  # only for the layout: where the split file and the files are
        probe.root, probe.tasks = root, list(loader.PROVIDES)
        split_file = probe.split_file(split)
        try:
            ids = read_ids(split_file)
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        synthetic = all(i.startswith("synth_") for i in ids)
        expected = len(ids) if synthetic else loader.EXPECTED_IDS[split]
        if len(ids) != expected:
            report.problems.append(f"{split_file}: {len(ids)} ids, the public {dataset} {split} split has {expected}")
        for task in loader.PROVIDES:
            _check_task(report, loader, root, split, task, ids, _sample(ids, deep, sample))
    return report


def _check_task(report: CheckReport, loader: type[FolderDataset], root: Path, split: str, task: str,
                ids: list[str], chosen: list[str]) -> None:
    row = {"split": split, "task": task, "ids": len(ids), "present": 0, "decoded": 0, "bad": 0}
    report.rows.append(row)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = loader(root, split, [task], skip_bad=True)
        except DataError as exc:  # not a single complete sample
            report.problems.append(f"{task} ({split}): {exc}")
            return
    row["present"] = len(ds.ids)
    for sample_id in ds.skipped:
        missing = next(p for p in ds.files(sample_id).values() if not p.is_file())
        report.problems.append(f"{missing}: missing (id {sample_id!r}, task {task}, {split})")
    present = set(ds.ids)
    for sample_id in (i for i in chosen if i in present):
        row["decoded"] += 1
        try:
            ds.decode(ds.files(sample_id))
        except DataError as exc:
            row["bad"] += 1
            report.problems.append(str(exc))
