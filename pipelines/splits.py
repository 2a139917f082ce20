"""Patient-grouped, stratified train/val/test splits that cannot leak.

Rules (printed by `cxr-cascade data split`):

1. A patient is `dataset:patient_id` (`Record.patient_key`), so two data sets' `person1` never
   merge. With `group_by="source"` all films of one publishing origin ("ieee8023/eurorad.org")
   form one unit as well; `leave_one_source_out` makes one fold of a leave-one-source-out test.
2. Units: all images of one patient form a unit; duplicate groups (exact or near, from
   `pipelines.dedup`) join the units of their members, so the copies of one picture and every
   patient they touch land in ONE split. A duplicate is therefore never kept across splits.
3. `keep_official_test`: the official test images of the named sources stay in test. A unit that
   holds such an image goes to test as a whole: its other images are MOVED to test (listed in
   `SplitResult.moved`). The other units of those sources go to train/val only.
4. Units are assigned greedily, largest first (ties broken by the seeded shuffle), each to the
   split that most reduces the squared gap, per stratum (data set, label), between the split's count
   and its target share; the gap is measured relative to the stratum's size so that small classes
   (21 ieee8023 viral images) are spread as carefully as big ones. This is the idea of scikit-learn's
   StratifiedGroupKFold, but with arbitrary ratios instead of 1/k folds.
5. The result is checked with `assert_patient_disjoint` and `assert_duplicates_disjoint` before
   anyone may write it.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from pipelines.records import Record

SPLIT_NAMES = ("train", "val", "test")


class LeakageError(ValueError):
    """A patient or a duplicate image sits in more than one split."""


def leaking_patients(records: Iterable[Record]) -> dict[str, list[str]]:
    """{patient_key: sorted splits} for every patient found in more than one split.

    Records without a split are ignored.
    """
    splits: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.split:
            splits[record.patient_key].add(record.split)
    return {key: sorted(value) for key, value in sorted(splits.items()) if len(value) > 1}


def assert_patient_disjoint(records: Iterable[Record]) -> None:
    """Raises `LeakageError` listing every patient (source:patient_id) found in more than one split."""
    leaks = leaking_patients(records)
    if leaks:
        shown = [f"{key} ({', '.join(splits)})" for key, splits in list(leaks.items())[:20]]
        more = f" ... and {len(leaks) - 20} more" if len(leaks) > 20 else ""
        raise LeakageError(
            f"{len(leaks)} patient(s) in more than one split: {'; '.join(shown)}{more}"
        )


def _path_key(path: str) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def same_path_groups(records: Sequence[Record]) -> list[list[int]]:
    """Indices of records naming the same file (after normalising the path), groups of >= 2.

    The same path is one image whatever its rows say (two patient ids, two labels), so such
    records always form one split unit, with or without duplicate detection.
    """
    by_path: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_path[_path_key(record.path)].append(index)
    return [members for members in by_path.values() if len(members) > 1]


def split_problems(records: Sequence[Record]) -> list[str]:
    """One line per reason a split manifest must not be trained on (empty when it is clean).

    Checks (the same as `cxr-cascade data check` and `data split --verify`): a file listed more
    than once, a patient (source:patient_id) in more than one split, a file in more than one split.
    """
    records = list(records)
    lines = []
    for members in same_path_groups(records):
        splits = sorted({records[i].split for i in members if records[i].split})
        where = f" in splits {', '.join(splits)}" if len(splits) > 1 else ""
        lines.append(f"{records[members[0]].path}: listed {len(members)} times{where}")
    for key, splits in leaking_patients(records).items():
        lines.append(f"patient {key} is in more than one split: {', '.join(splits)}")
    return lines


def assert_duplicates_disjoint(
    records: Sequence[Record], groups: Iterable[Sequence[int]]
) -> None:
    """Raises `LeakageError` listing duplicate groups (indices into `records`) that span splits."""
    bad = []
    for group in groups:
        members = list(group)
        splits = sorted({records[i].split for i in members if records[i].split})
        if len(splits) > 1:
            bad.append(
                " = ".join(f"{records[i].path} ({records[i].split})" for i in members)
            )
    if bad:
        shown = "; ".join(bad[:10]) + (f" ... and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise LeakageError(f"{len(bad)} duplicate group(s) span splits: {shown}")


@dataclass
class SplitResult:
    """records: the input records with `split` set, in input order; moved: (path, from, to, why)."""

    records: list[Record]
    moved: list[tuple[str, str, str, str]] = field(default_factory=list)
    units: int = 0
    kept_test_sources: tuple[str, ...] = ()


GROUP_BY = ("patient", "source")


def grouping_source(record: Record) -> Optional[str]:
    """The source a record is grouped by under ``group_by="source"``: its `source` when that names
    a publishing origin inside a data set ("ieee8023/eurorad.org"), else None (a bare data set
    name such as "kermany" is one hospital's series, grouped by patient as before)."""
    return record.source if "/" in record.source else None


def _units(records: Sequence[Record], groups: Iterable[Sequence[int]],
           group_by: str = "patient") -> list[list[int]]:
    parent = list(range(len(records)))

    def find(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(a: int, b: int) -> None:
        a, b = find(a), find(b)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for index, record in enumerate(records):
        union(first.setdefault(record.patient_key, index), index)
        if group_by == "source" and grouping_source(record) is not None:
            union(first.setdefault("source\0" + record.source, index), index)
    for group in groups:
        members = list(group)
        for other in members[1:]:
            union(members[0], other)
    units: dict[int, list[int]] = defaultdict(list)
    for index in range(len(records)):
        units[find(index)].append(index)
    return [units[root] for root in sorted(units)]


def _assign(
    records: Sequence[Record],
    units: list[list[int]],
    ratios: dict[str, float],
    rng: np.random.Generator,
) -> dict[int, str]:
    """Greedy stratified assignment of `units` to the splits of `ratios` (see module rule 4)."""
    names = [name for name in SPLIT_NAMES if name in ratios]
    if not units:
        return {}
    strata_of = [Counter((records[i].dataset, records[i].label) for i in unit) for unit in units]
    totals: Counter = Counter()
    for strata in strata_of:
        totals.update(strata)
    counts = {name: Counter() for name in names}
    sizes = {name: 0 for name in names}
    total_size = sum(len(unit) for unit in units)
    order = rng.permutation(len(units))
    order = sorted(order.tolist(), key=lambda u: -len(units[u]))  # stable: ties keep shuffle order
    assignment: dict[int, str] = {}
    for unit_index in order:
        strata = strata_of[unit_index]
        best, best_key = None, None
        for name in names:
            delta = 0.0
            for stratum, n in strata.items():
                target = ratios[name] * totals[stratum]
                before = counts[name][stratum] - target
                delta += ((before + n) ** 2 - before**2) / totals[stratum]
            deficit = ratios[name] * total_size - sizes[name]
            key = (round(delta, 12), -deficit)
            if best_key is None or key < best_key:
                best, best_key = name, key
        counts[best].update(strata)
        sizes[best] += len(units[unit_index])
        for i in units[unit_index]:
            assignment[i] = best
    return assignment


def split_records(
    records: Sequence[Record],
    *,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    keep_official_test: Union[bool, Iterable[str]] = False,
    duplicate_groups: Iterable[Sequence[int]] = (),
    group_by: str = "patient",
) -> SplitResult:
    """Splits `records` into train/val/test by patient, stratified by (data set, label).

    Args:
        records: the records; their `split` is read only for `keep_official_test`.
        val: fraction of images for validation, in [0, 1).
        test: fraction of images for test, in [0, 1); val + test < 1. For a source whose official
            test is kept, its remaining images go to train/val in the ratio (1-val-test) : val.
        seed: seed of the shuffle that breaks ties between equal-sized units.
        keep_official_test: True keeps the official test images of every source that has some;
            a list of source names keeps only those.
        duplicate_groups: groups of record indices that are copies of one image
            (`[g.members for g in DuplicateReport.groups]`); each group ends in one split.
        group_by: "patient", or "source": besides patients, all films of one publishing origin
            (`grouping_source`, e.g. "ieee8023/radiopaedia.org") land in one split, so a test
            source was never seen in training. Ratios are then met only as closely as whole
            sources allow.

    Returns:
        `SplitResult` with new records (input order) and the list of moved images.

    Raises:
        ValueError: bad ratios or an unknown source in `keep_official_test`.
        LeakageError: never expected; raised if the result were to leak (a bug guard).
    """
    for name, value in (("val", val), ("test", test)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1). Received: {name}={value}")
    if val + test >= 1.0:
        raise ValueError(f"val + test must be < 1. Received: val={val}, test={test}")
    if group_by not in GROUP_BY:
        raise ValueError(f"`group_by` must be one of {list(GROUP_BY)}. Received: group_by={group_by!r}")
    records = list(records)
    sources_with_test = sorted({r.source for r in records if r.split == "test"})
    if keep_official_test is True:
        kept = set(sources_with_test)
    elif keep_official_test is False or keep_official_test is None:
        kept = set()
    else:
        kept = set(keep_official_test)
        unknown = sorted(kept - set(sources_with_test))
        if unknown:
            raise ValueError(
                f"keep_official_test names source(s) without official test images: "
                f"{', '.join(unknown)}. Sources with a test split: "
                f"{', '.join(sources_with_test) or 'none'}"
            )
    # The same file listed twice (under two patient ids, say) is one image: one unit, always.
    groups = [list(group) for group in duplicate_groups] + same_path_groups(records)
    units = _units(records, groups, group_by)
    assignment: dict[int, str] = {}
    moved: list[tuple[str, str, str, str]] = []
    pool_all, pool_trainval = [], []
    for unit in units:
        official = [i for i in unit if records[i].split == "test" and records[i].source in kept]
        if official:
            for i in unit:
                assignment[i] = "test"
                if records[i].split != "test" or records[i].source not in kept:
                    moved.append(
                        (
                            records[i].path,
                            records[i].split or "-",
                            "test",
                            f"same patient or duplicate image as official test image "
                            f"{records[official[0]].path}",
                        )
                    )
        elif any(records[i].source in kept for i in unit):
            pool_trainval.append(unit)
        else:
            pool_all.append(unit)
    rng = np.random.default_rng(seed)
    train = 1.0 - val - test
    assignment.update(_assign(records, pool_all, {"train": train, "val": val, "test": test}, rng))
    assignment.update(
        _assign(
            records,
            pool_trainval,
            {"train": train / (train + val), "val": val / (train + val)},
            rng,
        )
    )
    result = [record.replace(split=assignment[i]) for i, record in enumerate(records)]
    assert_patient_disjoint(result)
    assert_duplicates_disjoint(result, groups)
    if group_by == "source":
        assert_sources_disjoint(result)
    return SplitResult(result, moved, len(units), tuple(sorted(kept)))


def assert_sources_disjoint(records: Iterable[Record]) -> None:
    """Raises `LeakageError` naming every publishing origin (`grouping_source`) in several splits."""
    splits: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if grouping_source(record) is not None:
            splits[record.source].add(record.split)
    bad = sorted(f"{s} ({', '.join(sorted(v))})" for s, v in splits.items() if len(v) > 1)
    if bad:
        raise LeakageError(f"{len(bad)} source(s) in more than one split: {'; '.join(bad[:10])}")


def leave_one_source_out(
    records: Sequence[Record],
    held_out: str,
    *,
    val: float = 0.1,
    seed: int = 0,
    duplicate_groups: Iterable[Sequence[int]] = (),
) -> SplitResult:
    """One fold of a leave-one-source-out evaluation: `held_out`'s films are the test split.

    Every film tied to a held-out film (same patient or duplicate image) joins the test split
    too (listed in `moved`); the rest is split train/val by patient, stratified as
    `split_records` does. Training on the train split of each fold and evaluating on its test
    split measures how stage 2 does on a publication it has never seen.

    Raises:
        ValueError: `held_out` is not a source of `records`, or a bad `val`.
    """
    if not 0.0 < val < 1.0:
        raise ValueError(f"val must be in (0, 1). Received: val={val}")
    records = list(records)
    sources = sorted({r.source for r in records})
    if held_out not in sources:
        raise ValueError(
            f"`held_out` must be a source of the records ({len(sources)}: "
            f"{', '.join(sources[:8])}{'...' if len(sources) > 8 else ''}). Received: held_out={held_out!r}"
        )
    groups = [list(group) for group in duplicate_groups]
    units = _units(records, groups)
    assignment: dict[int, str] = {}
    moved: list[tuple[str, str, str, str]] = []
    rest = []
    for unit in units:
        if any(records[i].source == held_out for i in unit):
            for i in unit:
                assignment[i] = "test"
                if records[i].source != held_out:
                    moved.append((records[i].path, records[i].split or "-", "test",
                                  f"same patient or duplicate image as a film of {held_out}"))
        else:
            rest.append(unit)
    assignment.update(_assign(records, rest, {"train": 1.0 - val, "val": val}, np.random.default_rng(seed)))
    result = [record.replace(split=assignment[i]) for i, record in enumerate(records)]
    assert_patient_disjoint(result)
    assert_duplicates_disjoint(result, groups)
    return SplitResult(result, moved, len(units), ())


def split_table(records: Iterable[Record]) -> dict[str, dict[str, int]]:
    """{split: {label: images, "patients": n, "images": n}} for a summary."""
    table: dict[str, dict[str, int]] = {}
    patients: dict[str, set[str]] = defaultdict(set)
    for record in records:
        row = table.setdefault(record.split or "-", Counter())
        row[record.label] += 1
        row["images"] += 1
        patients[record.split or "-"].add(record.patient_key)
    for split, row in table.items():
        row["patients"] = len(patients[split])
    order = {name: i for i, name in enumerate(SPLIT_NAMES)}
    return {k: dict(table[k]) for k in sorted(table, key=lambda s: order.get(s, 99))}
