"""The dataclasses every step takes, and the names and ranges their settings accept.

One object per step, plain defaults, no magic: the CLI builds them from options (its defaults are these
defaults), presets (YAML) load into them, and `dataclasses.asdict` writes them beside every output so a
run says how it was made. The module imports nothing heavy, so the CLI can check options with it before
torch is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, NamedTuple

from .registry import BACKENDS  # the inference backends' names: their table, without torch
from .errors import MahaError


@dataclass
class DataConfig:
    """Which data to read and how to split it."""

    dataset: str = "mahanews-shc"  # a named dataset, or a folder of CSVs
    data_dir: str | None = None  # explicit folder that holds the dataset's files
    text_col: str | None = None  # for a folder of CSVs; named datasets know theirs
    label_col: str | None = None
    dev_fraction: float = 0.1
    seed: int = 42
    dedup_test: bool = False  # evaluate on the de-duplicated test split
    max_train_rows: int | None = None  # for tests and quick looks: a stratified slice
    # Labels are matched exactly; these two make near misses (`sadness` in dev, `Sadness` in training) one label.
    # Applied to every split before the dev/test labels are checked against the training ones: the map first,
    # then the folding (data.relabel).
    label_map: str | None = None  # a CSV of `from,to` rows (header `from,to` optional): each `from` label renamed
    fold_label_case: bool = False  # labels equal but for case/whitespace: the training file's commonest spelling


@dataclass
class TrainConfig:
    """One training loop's settings (fine-tuning, pruning and distillation share them)."""

    epochs: float = 3.0
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0  # gradient clipping (as transformers' Trainer); 0 disables
    max_length: int = 64
    # On CPU the 96M-row embedding matrix dominates the optimizer step; freezing it costs
    # little accuracy on a small training set.
    freeze_embeddings: bool = True
    early_stopping_patience: int = 2  # evaluations without dev macro-F1 gain; 0 disables
    evals_per_epoch: int = 1
    checkpoint_every: int = 100  # optimizer steps between resumable checkpoints
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16"
    kd_alpha: float = 0.5  # weight of the distillation term when teacher logits are given
    kd_temperature: float = 2.0
    kd_hidden_weight: float = 0.0  # weight of the hidden-state (cosine) term; > 0 runs the teacher live
    seed: int = 42


class Bounds(NamedTuple):
    """The range a numeric setting must lie in (None: unbounded), and the option that sets it on the CLI."""

    option: str
    lo: float | None
    hi: float | None = None
    lo_open: bool = False  # the lower bound itself is refused


# TrainConfig field -> its range (validate.check_train_config names the option, or the preset key)
TRAIN_RANGES = {
    "epochs": Bounds("--epochs", 0, lo_open=True), "batch_size": Bounds("--batch-size", 1),
    "lr": Bounds("--lr", 0, lo_open=True), "max_length": Bounds("--max-length", 1),
    "kd_alpha": Bounds("--alpha", 0, 1), "kd_temperature": Bounds("--temperature", 0, lo_open=True),
    "kd_hidden_weight": Bounds("--hidden-weight", 0), "early_stopping_patience": Bounds("--patience", 0),
    "evals_per_epoch": Bounds("--evals-per-epoch", 1), "checkpoint_every": Bounds("--checkpoint-every", 1),
    "weight_decay": Bounds("--weight-decay", 0), "warmup_ratio": Bounds("--warmup-ratio", 0, 1),
}
# TrainConfig.mixed_precision; "auto": what the hardware runs natively (hardware.py)
TRAINING_PRECISIONS = ("auto", "no", "bf16", "fp16")


@dataclass
class PruneConfig:
    """Block movement pruning (Sanh et al. 2020; Lagunas et al. 2021)."""

    sparsity: float = 0.5  # fraction of the encoder's Linear weights removed in the final model
    binarizer: str = "topk"  # "topk" | "sigmoid"
    block_size: int = 32  # square blocks for attention matrices; FFN pruned by neuron
    score_lr: float = 1e-2
    initial_warmup: float = 0.1  # fraction of steps at zero sparsity
    final_warmup: float = 0.2  # fraction of steps at the final sparsity
    penalty: float = 1.0  # L1 weight on sigmoid scores (sigmoid binariser only)


@dataclass
class MeasureConfig:
    """How every row is timed: same process, interleaved, warm-up, median of `repeats`."""

    repeats: int = 5
    warmup: int = 2
    texts: int = 256  # test texts timed per row at batch 32 (8 batches per repeat)
    batch1_texts: int = 64  # the first N of them timed one by one: 64 calls per repeat give a stable
    # median, and all 256 made batch 1 two thirds of the grid's timing session (512 s of 754 s in cpu-quick)
    threads: int = 2
    country: str = "IND"  # ISO code for CodeCarbon's grid carbon intensity


@dataclass
class TransferConfig:
    """Unlabelled text the teacher labels for distillation (see transfer.py); off while `path` is None."""

    path: str | None = None  # a CSV (column `text_col`) or a text file with one text per line
    text_col: str | None = None
    label_col: str | None = None  # optional: only to report how often the teacher agrees with it
    window_words: int = 12  # pieces of about a headline's length (MahaNews headlines: median 12 words)
    ngram: int = 8  # a piece sharing this many consecutive words with a dev/test text is dropped
    max_pieces: int | None = None  # a seeded random sample of at most this many pieces
    use_labels: bool = False  # train on the file's labels too (hard labels), not only the teacher's
    seed: int = 42


BINARIZERS = ("topk", "sigmoid")  # PruneConfig.binarizer (pruning/masks.py implements them)

ROWS = ("baseline", "baseline+bf16", "baseline+int8", "mp", "kd", "p25", "p50", "p75", "p25+kd", "p50+kd",
        "p75+kd", "p25+kd+mp", "best+int8", "best+onnx")


@dataclass
class GridConfig:
    """A preset: the study's grid of rows and the settings each kind of row trains with."""

    datasets: list[str] = field(default_factory=lambda: ["mahanews-shc"])  # one grid (and report) each
    text_col: str | None = None  # column names for folders of CSVs; named datasets know theirs
    label_col: str | None = None
    max_train_rows: int | None = None
    base_model: str | None = None  # what an already fine-tuned teacher came from (the `mp` row repeats that)
    rows: list[str] = field(default_factory=lambda: list(ROWS))
    finetune: TrainConfig = field(default_factory=TrainConfig)  # the teacher (when it needs it) and `mp`
    distill: TrainConfig = field(default_factory=TrainConfig)  # the layer student (`kd`)
    prune_train: TrainConfig = field(default_factory=TrainConfig)  # pN and pN+kd rows
    prune: PruneConfig = field(default_factory=PruneConfig)  # sparsity comes from the row name
    student_layers: int = 6  # layers of the `kd` row's student (`kdN` rows name theirs)
    # the static-embedding student (`static` rows): its table trains too unless freeze_embeddings
    static: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=5e-3, freeze_embeddings=False,
                                                                    early_stopping_patience=3))
    static_dim: int = 256  # dimensions its piece vectors keep after PCA (at most the teacher's hidden size)
    seeds: int = 1  # trained rows are built with seeds seed, seed+1, ...: shown as mean and spread
    # trained rows built with another number of seeds than `seeds`, e.g. {"baseline": 3, "kd+tr": 3}: the rows a
    # finding rests on get their run-to-run spread measured without multiplying the whole grid's training time
    row_seeds: dict[str, int] = field(default_factory=dict)
    # per-row changes to the training section a trained row uses, e.g. {"p50+kd": {"epochs": 6}}: deeper
    # compression may need longer training to converge than the section's other rows
    train_overrides: dict[str, dict] = field(default_factory=dict)
    # how far one row moved between two runs of this preset (points), when measured: the report marks smaller
    # differences as noise instead of findings
    run_to_run_points: float | None = None
    # the accuracy budget, in points below the teacher: `best` is the fastest compressed row within it on dev,
    # and the report's "within N points?" verdicts and runtime choice use the same number
    best_within_points: float = 1.0
    served_blocks: bool = True  # score and time every compressed row as recipes.SERVED_BACKEND runs it too
    transfer: TransferConfig = field(default_factory=TransferConfig)  # used by the rows marked +tr
    # per-row changes to the transfer section for rows marked +tr, e.g. {"static+tr": {"max_pieces": None}}: the
    # cap keeps the transformer students' training short, while a static student's steps cost milliseconds, so
    # every piece costs it only the teacher's labelling
    transfer_overrides: dict[str, dict] = field(default_factory=dict)
    measure: MeasureConfig = field(default_factory=MeasureConfig)


# `optimize`: how a model's dev score is compared with the teacher's, and which recipes it tries by default
METRICS = ("accuracy", "macro-f1")
DECISIONS = ("point", "interval")  # the pass rule: the dev point estimate, or the bootstrap interval's lower bound
# Rows of the grid's registry, from the teacher-sized layer student down to the static table: depth, width,
# both, and no transformer at all (each gets `+tr` when a transfer set is given)
OPTIMIZE_CANDIDATES = ("kd", "kd4", "kd3", "kd2", "kdp50", "p25+kd", "p50+kd", "p75+kd", "static")
# the transformer runtimes it measures and may ship: the export backends (export.TRANSFORMER_BACKENDS), each where
# this machine runs it natively (hardware.unsupported_reason: openvino-bf16 needs native bf16, the OpenVINO ones the
# openvino package); a static student runs `static`. torch's bf16 and int8 are left out: no exported folder runs
# them, so a verdict in them would judge a model that cannot ship
OPTIMIZE_RUNTIMES = ("onnx", "onnx-int8", "onnx-int8-fused", "openvino", "openvino-int8", "openvino-bf16")


@dataclass
class OptimizeConfig:
    """What `optimize` looks for: the fastest model whose dev score is within `budget` points of the teacher's."""

    budget: float = 1.0  # points of `metric` (0-100 scale) a model may lose against the teacher on dev
    metric: str = "accuracy"  # "accuracy" | "macro-f1"
    batch_size: int = 32  # the batch every latency is measured at: the user's serving batch
    time_budget_s: float | None = None  # wall-clock seconds for the whole run (checked between trials); None: none
    # "point" by default: it is the grid's rule for `best`, and a dev split of a few hundred texts gives a
    # bootstrap interval wider than a 1-point budget, so "interval" refuses even models as accurate as the teacher
    decide: str = "point"
    candidates: list[str] = field(default_factory=lambda: list(OPTIMIZE_CANDIDATES))
    runtimes: list[str] | None = None  # None: every runtime this machine runs natively (optimize.native_runtimes)
    preset: str = "cpu-quick"  # the grid preset whose training and measurement settings the recipes use


def from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a dict, refusing unknown keys and ill-typed values (named in the error)."""
    if not isinstance(values, dict):
        raise MahaError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise MahaError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
        default = getattr(defaults, key)
        if is_dataclass(default):
            kwargs[key] = from_dict(type(default), value, f"{where}.{key}")
        else:
            kwargs[key] = _checked(value, default, str(known[key].type), f"{where}.{key}")
    return cls(**kwargs)


def _checked(value: Any, default: Any, annotation: str, where: str) -> Any:
    """The value if it has the default's type (ints pass as floats; optional fields take their annotation's type)."""
    if default is None:
        wanted = {"int": int, "str": str, "float": (int, float)}[annotation.split("|")[0].strip()]
        ok = value is None or (isinstance(value, wanted) and not isinstance(value, bool))
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif isinstance(default, dict):  # dict[str, dict] (train/transfer_overrides) or dict[str, int] (row_seeds)
        inner = {"dict": dict, "int": int}[annotation.rsplit(",", 1)[-1].strip(" ]")]
        ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, inner) and not isinstance(v, bool)
                                             for k, v in value.items())
    else:
        ok = isinstance(value, type(default)) and not isinstance(value, bool)
    if not ok:
        expected = annotation if default is None else type(default).__name__
        raise MahaError(f"{where}: bad value {value!r} (expected {expected})")
    return value


__all__ = ["DataConfig", "TrainConfig", "OptimizeConfig", "METRICS", "DECISIONS", "OPTIMIZE_CANDIDATES",
           "OPTIMIZE_RUNTIMES", "PruneConfig", "MeasureConfig", "TransferConfig", "GridConfig", "ROWS", "from_dict",
           "Bounds", "TRAIN_RANGES", "TRAINING_PRECISIONS", "BINARIZERS", "BACKENDS"]
