"""The report's findings as data: what the grid's rows show, computed from `results.json` alone.

Each finding is a typed record (which rows, which numbers, whether it clears the run-to-run spread), so tests
assert what the report found rather than how a sentence is worded, and `markdown.py` words it separately.
Percentages are accuracy points (0-100); `Difference` keeps the fractions `results.json` records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..study.results import Results, Row, serves_best

DEFAULT_WITHIN_POINTS = 1.0  # the accuracy budget when a results file's config names none (best_within_points)
BUDGETS = (1.0, 2.0, 3.0)  # accuracy points below the teacher the frontier findings look at
REFERENCE = "tfidf"  # the row a user would pick instead of any transformer
TEACHER = "baseline"  # the row every difference is against
FLOAT_NOISE = 1e-9  # differences are sums of fractions: a budget's edge compares within this


@dataclass(frozen=True)
class Difference:
    """A paired accuracy difference to the teacher and its 95% bootstrap interval, as fractions."""

    difference: float
    ci_low: float
    ci_high: float

    @classmethod
    def of(cls, block: dict) -> Difference:
        d = block["vs_baseline"]
        return cls(d["difference"], d["ci_low"], d["ci_high"])


@dataclass(frozen=True)
class Ratio:
    """Two end-to-end latencies (ms) at one batch size: a model's and the one it is compared with."""

    ms: float | None
    other_ms: float | None


@dataclass(frozen=True)
class SeedRange:
    """The lowest and highest test accuracy (points) of a row trained with several seeds."""

    row: str
    low: float
    high: float
    seeds: int


@dataclass(frozen=True)
class Spread:
    """The run-to-run spread (points) a difference must exceed to say anything: the larger of its sources."""

    points: float
    preset: float | None  # the preset's `run_to_run_points` (re-runs measured by hand), when it names one
    seeds: float | None  # the widest `SeedRange` of this grid, when a row has several seeds


@dataclass(frozen=True)
class Verdict:
    """Is a row (or its served block) within the accuracy budget of the teacher?"""

    row: str
    served: bool
    difference: Difference
    estimate_within: bool  # the point estimate is within the budget
    interval_agrees: bool  # the whole interval is on the same side of the budget as the estimate
    within_spread: bool  # a model trained here whose difference is smaller than the run-to-run spread


@dataclass(frozen=True)
class Chosen:
    """A `best+X` row and how the grid chose the row it serves."""

    row: str
    source_row: str | None
    chosen_by: str


@dataclass(frozen=True)
class FastestServing:
    """The runtime that serves the chosen model fastest at one batch size (model-only speedups)."""

    batch: int
    row: str
    backend: str
    source_row: str
    speedup: float
    others: tuple[tuple[str, float], ...]  # the other best+X rows within the budget on dev, and their speedups


@dataclass(frozen=True)
class Reference:
    """The reference (TF-IDF) against the teacher's first seed, the one every difference is against."""

    accuracy: float
    macro_f1: float
    teacher_accuracy: float
    teacher_macro_f1: float
    difference: Difference
    teacher_mean: tuple[int, float, float] | None  # (seeds, accuracy, macro-F1) when the teacher has several
    versus_teacher: Ratio  # at batch 32


@dataclass(frozen=True)
class Winner:
    """The fastest model end to end at one batch size whose interval excludes a loss larger than the budget."""

    row: str
    served: bool
    e2e_speedup: float
    speedup: float | None  # model-only, when measured
    accuracy: float
    difference: Difference
    disk_mb: float | None
    peak_rss_mb: float | None  # only for a row's own runtime (a served block has none of its own)
    teacher: tuple[str, Ratio] | None  # the teacher in its fastest runtime within the budget, when not the winner
    versus_reference: tuple[float, float, Ratio] | None  # accuracy and macro-F1 points above the reference


@dataclass(frozen=True)
class FrontierLine:
    """The winner (None: no model) at one batch size for the budgets it wins, consecutive equal ones merged."""

    batch: int
    budgets: tuple[float, ...]
    winner: Winner | None


@dataclass(frozen=True)
class TransferUse:
    """How many transfer pieces some `+tr` rows used (a row's `transfer_overrides` can give it another cap)."""

    rows: tuple[str, ...]
    kept: int
    agreement: float | None  # the teacher's label agrees with the file's own label on this share


@dataclass(frozen=True)
class Transfer:
    """The transfer set the `+tr` rows distilled on, its cleaning, and each group of rows' use of it."""

    file: str
    texts_read: int
    pieces: int
    dropped_overlap: int
    dropped_duplicate: int
    uses: tuple[TransferUse, ...]


@dataclass(frozen=True)
class Findings:
    """Everything the report concludes from the finished rows, in the order it says it."""

    within: float
    seed_ranges: tuple[SeedRange, ...]
    spread: Spread | None
    verdicts: tuple[Verdict, ...]
    chosen: tuple[Chosen, ...]
    fastest: tuple[FastestServing, ...]
    not_considered: tuple[str, ...]  # best+X rows more than the budget below their model on dev
    reference: Reference | None
    frontier: tuple[FrontierLine, ...]  # empty when nothing was timed end to end
    transfer: Transfer | None


def findings(results: Results) -> Findings:
    """The findings of a results file's finished rows, with its config's budget and run-to-run spread."""
    config = results["meta"].get("config", {})
    rows = [r for r in results["rows"] if r.get("status") == "done"]
    within = config.get("best_within_points", DEFAULT_WITHIN_POINTS)
    seeds = seed_ranges(rows)
    spread = _spread(config.get("run_to_run_points"), max((s.high - s.low for s in seeds), default=0.0))
    fastest, not_considered = fastest_serving(rows, within)
    reference, frontier = _frontier(rows)
    return Findings(within, tuple(seeds), spread, tuple(verdicts(rows, within, spread)),
                    tuple(Chosen(r["name"], r.get("source_row"), r["chosen_by"]) for r in rows if r.get("chosen_by")),
                    tuple(fastest), tuple(not_considered), reference, tuple(frontier), transfer(rows))


def reference_seed(teacher: Row) -> Row:
    """The teacher's block every difference is against: its first seed, the one every student learned from
    (with several seeds the row's own figures are their mean)."""
    return teacher["seeds"][0] if len(teacher.get("seeds") or []) > 1 else teacher


def served_backend(rows: list[Row]) -> str:
    """The backend of the rows' `served` blocks (one per grid run)."""
    names = sorted({
        r["served"]["backend"]
        for r in rows if isinstance(r.get("served"), dict) and "backend" in r["served"]
    })
    return ", ".join(names) or "ONNX Runtime int8"


def seed_ranges(rows: list[Row]) -> list[SeedRange]:
    """Each row trained with several seeds: the run-to-run spread this grid measured itself."""
    return [
        SeedRange(r["name"], 100 * min(accs), 100 * max(accs), len(accs)) for r in rows
        if len(accs := [s["accuracy"] for s in r.get("seeds") or [] if s.get("accuracy") is not None]) > 1
    ]


def _spread(preset: float | None, measured: float) -> Spread | None:
    if not (preset or measured):
        return None
    return Spread(max(preset or 0.0, measured), preset or None, measured or None)


def verdicts(rows: list[Row], within: float, spread: Spread | None) -> list[Verdict]:
    """Each row's and served block's difference to the teacher against the budget `within` (points). A row
    trained here is trained again by a re-run, so the spread applies to it; a row serving another row's model
    (`source_row`) is deterministic given it."""
    compared = [(r["name"], False, Difference.of(r), not r.get("source_row")) for r in rows
                if r.get("vs_baseline") and r["name"] != TEACHER]
    compared += [(r["name"], True, Difference.of(r["served"]), True) for r in rows
                 if isinstance(r.get("served"), dict) and r["served"].get("vs_baseline")]
    found = []
    for name, served, d, trained in compared:
        close = 100 * d.difference >= -within - FLOAT_NOISE
        agrees = (100 * d.ci_low >= -within - FLOAT_NOISE) if close else 100 * d.ci_high < -within
        noise = bool(trained and spread and abs(100 * d.difference) < spread.points)
        found.append(Verdict(name, served, d, close, agrees, noise))
    return found


def fastest_serving(rows: list[Row], within: float) -> tuple[list[FastestServing], list[str]]:
    """Which runtime serves the chosen model fastest at each batch size, among the best+X rows whose dev accuracy
    stays within `within` points of the model they serve (dev, as the choice itself is made; never test); and
    the best+X rows left out for falling further."""
    dev = {r["name"]: r.get("dev_accuracy") for r in rows}
    served = [
        r for r in rows
        if serves_best(r) and r.get("dev_accuracy") is not None and dev.get(r.get("source_row")) is not None
    ]
    equal = [r for r in served if r["dev_accuracy"] >= dev[r["source_row"]] - within / 100]
    found = []
    for batch in (32, 1):
        timed = [r for r in equal if r.get(f"speedup_b{batch}") is not None]
        if timed:
            win = max(timed, key=lambda r: r[f"speedup_b{batch}"])
            found.append(
                FastestServing(batch, win["name"], win["backend"], win["source_row"], win[f"speedup_b{batch}"],
                               tuple((r["name"], r[f"speedup_b{batch}"]) for r in timed if r is not win)))
    return found, [r["name"] for r in served if r not in equal]


def _frontier(rows: list[Row]) -> tuple[Reference | None, list[FrontierLine]]:
    """Per budget and batch size, the fastest model end to end whose 95% interval excludes a loss larger than
    the budget (rows and served blocks alike), and the reference against the teacher."""
    entries = [(row["name"], block is not row, block, row) for row in rows if row["name"] not in (TEACHER, REFERENCE)
               for block in (row, row.get("served")) if isinstance(block, dict) and block.get("vs_baseline")]
    base = next((r for r in rows if r["name"] == TEACHER), None)
    ref = next((r for r in rows if r["name"] == REFERENCE), None)
    if not entries or base is None or not any(e[2].get("e2e_speedup_b32") for e in entries):
        return None, []
    reference = None
    if ref and ref.get("vs_baseline"):
        first = reference_seed(base)
        mean = (len(base["seeds"]), base["accuracy"], base["macro_f1"]) if first is not base else None
        reference = Reference(ref["accuracy"], ref["macro_f1"], first["accuracy"], first["macro_f1"],
                              Difference.of(ref), mean, _ratio(ref, base, 32))
    lines: list[FrontierLine] = []
    for batch in (32, 1):
        key = f"e2e_speedup_b{batch}"
        for budget in BUDGETS:
            timed = [
                e for e in entries
                if 100 * e[2]["vs_baseline"]["ci_low"] >= -budget - FLOAT_NOISE and e[2].get(key) is not None
            ]
            winner = _winner(timed, batch, ref) if timed else None
            if lines and lines[-1].batch == batch and lines[-1].winner == winner:
                lines[-1] = FrontierLine(batch, (*lines[-1].budgets, budget), winner)
            else:
                lines.append(FrontierLine(batch, (budget, ), winner))
    return reference, lines


def _winner(timed: list[tuple[str, bool, dict, Row]], batch: int, ref: Row | None) -> Winner:
    """The fastest of `timed` (name, served, block, row) at `batch`, beside the teacher in its fastest runtime
    among them (what compressing the model adds to changing the runtime: the teacher's own rows are
    `baseline+X`) and the reference."""
    key = f"e2e_speedup_b{batch}"
    name, served, block, row = max(timed, key=lambda e: e[2][key])
    teacher = max((e for e in timed if e[3].get("source_row") == TEACHER), key=lambda e: e[2][key], default=None)
    versus = None
    if ref:
        versus = (100 * (block["accuracy"] - ref["accuracy"]), 100 * (block["macro_f1"] - ref["macro_f1"]),
                  _ratio(block, ref, batch),
                  )
    return Winner(name, served, block[key],
                  block.get(f"speedup_b{batch}") or None, block["accuracy"], Difference.of(block), block.get("disk_mb"),
                  row["peak_rss_mb"] if not served and row.get("peak_rss_mb") else None,
                  (label(teacher[0], teacher[1]),
                   _ratio(block, teacher[2], batch)) if teacher and teacher[2] is not block else None, versus)


def label(row: str, served: bool) -> str:
    """How the report names a row's own model, or its model as the grid serves it."""
    return f"{row} (served)" if served else row


def _ratio(block: dict, other: dict, batch: int) -> Ratio:
    return Ratio(block.get(f"e2e_ms_b{batch}_p50"), other.get(f"e2e_ms_b{batch}_p50"))


def transfer(rows: list[Row]) -> Transfer | None:
    """What the `+tr` rows distilled on: the file and its cleaning once, then how many pieces each group of
    rows with the same transfer settings used."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        if r.get("transfer"):
            groups.setdefault(json.dumps(r["transfer"], sort_keys=True), []).append(r)
    if not groups:
        return None
    first = next(iter(groups.values()))[0]["transfer"]
    uses = tuple(
        TransferUse(tuple(r["name"] for r in members), members[0]["transfer"]["kept"], members[0]["transfer"].get(
            "teacher_agreement_with_file_labels")) for members in groups.values())
    return Transfer(first["file"], first["texts_read"], first["pieces"], first["dropped_overlap"],
                    first["dropped_duplicate"], uses)
