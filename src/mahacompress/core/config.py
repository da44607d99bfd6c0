"""The dataclasses every step takes, and the names and ranges their settings accept.

One object per step, plain defaults, no magic: the CLI builds them from options (its defaults are these
defaults), presets (YAML) load into them, and `dataclasses.asdict` writes them beside every output so a
run says how it was made. The module imports nothing heavy, so the CLI can check options with it before
torch is loaded.

Presets are validated by pydantic (`from_dict`: a `TypeAdapter` over these stdlib dataclasses, strict, unknown keys
refused), imported only when a preset loads: importing pydantic took 105-160 ms here and a first preset load 0.3 s
(2026-12-07, 2 shared busy cores), against about 35 ms for this whole module within a CLI start-up of 0.3-0.5 s
that loads no preset. So the classes stay plain dataclasses: `asdict`, `replace` and defaults as they were, and
nothing checked when code builds one. Ranges are not pydantic constraints for that reason: the CLI builds these
objects from options, so `validate.check_train_config` checks them (`TRAIN_RANGES`, naming the option or the
preset key), for options and presets alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NamedTuple, TypeVar

from .errors import MahaError
from .registry import BACKENDS, EXPORT_BACKENDS, SPECS, is_transformer  # the backends' table, without torch

if TYPE_CHECKING:
    from pydantic import TypeAdapter


class _Settings:
    """Base of the settings dataclasses: how `from_dict` has pydantic validate a preset's mapping into one.

    Strict, as presets always were: text is no number, 1 is no boolean, 2.0 no whole number, and an unknown key is
    refused. Strictness stops at the dataclass itself, which takes a mapping (strict pydantic would want an
    instance of it, and a preset's sections are mappings).
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = {"strict": True, "extra": "forbid"}

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        schema = handler(source)
        schema["strict"] = False
        return schema


class _NumberText:
    """A float setting also takes a number's text: PyYAML reads YAML 1.1, where `1e-4` (no dot) is a string."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic import BeforeValidator

        return BeforeValidator(_number_of_text).__get_pydantic_core_schema__(source, handler)


def _number_of_text(value: Any) -> Any:
    """`value` as a float when it is a number's text; anything else unchanged, for the strict float to judge."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


Number = Annotated[float, _NumberText()]  # a float setting (its default a float): presets may write it as text


@dataclass
class DataConfig(_Settings):
    """Which data to read and how to split it."""

    dataset: str = "mahanews-shc"  # a named dataset, or a folder of CSVs
    data_dir: str | None = None  # explicit folder that holds the dataset's files
    text_col: str | None = None  # for a folder of CSVs; named datasets know theirs
    label_col: str | None = None
    dev_fraction: Number = 0.1
    seed: int = 42
    dedup_test: bool = False  # evaluate on the de-duplicated test split
    max_train_rows: int | None = None  # for tests and quick looks: a stratified slice
    # Labels are matched exactly; these two make near misses (`sadness` in dev, `Sadness` in training) one label.
    # Applied to every split before the dev/test labels are checked against the training ones: the map first,
    # then the folding (data.relabel).
    label_map: str | None = None  # a CSV of `from,to` rows (header `from,to` optional): each `from` label renamed
    fold_label_case: bool = False  # labels equal but for case/whitespace: the training file's commonest spelling


@dataclass
class AugmentConfig(_Settings):
    """Teacher-labelled variants of the training texts (train/augment.py), TinyBERT's lever for small students on
    small labelled sets: each text gives up to `per_text` variants, made by replacing words with their near
    neighbours in the teacher's own word-vector space, deleting words, or cropping a span. Off while `per_text` is 0.
    """

    per_text: int = 0  # variants asked of each text (fewer when de-duplication or the overlap filter drops some)
    replace_rate: Number = 0.3  # chance that a word with neighbours is replaced by one of them
    delete_rate: Number = 0.1  # chance that a word is deleted
    crop_rate: Number = 0.2  # share of variants that are a crop: a contiguous span of 60-90% of the words
    neighbours: int = 8  # a word is replaced by one of its `neighbours` nearest words (cosine)
    vocabulary: int = 20000  # the most frequent words of the texts that get vectors (and may replace others)
    transfer: bool = True  # variants of the transfer texts too, not only of the labelled ones
    ngram: int = 8  # a variant sharing this many consecutive words with a dev/test text is dropped and counted
    seed: int = 42


@dataclass
class TrainConfig(_Settings):
    """One training loop's settings (fine-tuning, pruning and distillation share them)."""

    epochs: Number = 3.0
    batch_size: int = 32
    lr: Number = 5e-5
    weight_decay: Number = 0.01
    warmup_ratio: Number = 0.1
    max_grad_norm: Number = 1.0  # gradient clipping (as transformers' Trainer); 0 disables
    max_length: int = 64
    # On CPU the 96M-row embedding matrix dominates the optimizer step; freezing it costs
    # little accuracy on a small training set.
    freeze_embeddings: bool = True
    early_stopping_patience: int = 2  # evaluations without dev macro-F1 gain; 0 disables
    evals_per_epoch: int = 1
    checkpoint_every: int = 100  # optimizer steps between resumable checkpoints
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16"
    kd_alpha: Number = 0.5  # weight of the distillation term when teacher logits are given
    kd_temperature: Number = 2.0
    kd_hidden_weight: Number = 0.0  # weight of the hidden-state (cosine) term; > 0 runs the teacher live
    # weight of MiniLMv2's self-attention relation term (query-query, key-key, value-value); > 0 runs the teacher live
    kd_attention_weight: Number = 0.0
    relation_heads: int = 12  # heads the relations are split into, whatever each model's own head count
    # the teacher layer (0-based) each student layer learns from in the intermediate terms; None: the layers a
    # layer student was copied from, layer for layer for a student as deep as the teacher, else evenly spaced
    kd_layer_map: list[int] | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # teacher-labelled variants (KD term only)
    # static students: epochs their table regresses the teacher's features before the head trains (Tokenlearn's idea)
    pretrain_epochs: Number = 0.0
    # layer students: the shallower sub-networks (layer counts) trained beside the full student on every step
    # (`train/elastic.py`), so cutting it to one of these depths needs no training of its own; None: off
    elastic_depths: list[int] | None = None
    seed: int = 42

    @property
    def intermediate(self) -> bool:
        """Whether an intermediate-layer term is asked for (either weight above 0): the teacher then runs live on
        every batch, and the student needs layers."""
        return self.kd_hidden_weight > 0 or self.kd_attention_weight > 0


# Settings added after runs were recorded, and when each is off: `recorded` leaves a setting out while it is off, so
# a row recorded before it existed keeps its settings and is not built again for a knob it never turned.
_OFF: dict[str, Any] = {
    "kd_attention_weight": lambda c: c.kd_attention_weight == 0, "relation_heads": lambda c: c.kd_attention_weight == 0,
    "kd_layer_map": lambda c: c.kd_layer_map is None, "augment": lambda c: c.augment.per_text == 0,
    "pretrain_epochs": lambda c: c.pretrain_epochs == 0, "elastic_depths": lambda c: c.elastic_depths is None
}


def recorded(cfg: TrainConfig) -> dict:
    """`cfg` as a row's settings record it: `asdict`, without the levers left off (`_OFF`)."""
    return {k: v for k, v in asdict(cfg).items() if not (k in _OFF and _OFF[k](cfg))}


class Bounds(NamedTuple):
    """The range a numeric setting must lie in (None: unbounded), and the option that sets it on the CLI."""

    option: str
    lo: float | None
    hi: float | None = None
    lo_open: bool = False  # the lower bound itself is refused


# TrainConfig field -> its range (validate.check_train_config names the option, or the preset key)
TRAIN_RANGES = {
    "epochs": Bounds("--epochs", 0, lo_open=True), "batch_size": Bounds("--batch-size", 1), "lr": Bounds(
        "--lr", 0, lo_open=True), "max_length": Bounds("--max-length", 1), "kd_alpha": Bounds("--alpha", 0, 1),
    "kd_temperature": Bounds("--temperature", 0, lo_open=True), "kd_hidden_weight": Bounds("--hidden-weight", 0),
    "kd_attention_weight": Bounds("--attention-weight", 0), "relation_heads": Bounds(
        "--relation-heads", 1), "pretrain_epochs": Bounds("--pretrain-epochs", 0), "early_stopping_patience": Bounds(
            "--patience", 0), "evals_per_epoch": Bounds("--evals-per-epoch", 1), "checkpoint_every": Bounds(
                "--checkpoint-every", 1), "weight_decay": Bounds("--weight-decay",
                                                                 0), "warmup_ratio": Bounds("--warmup-ratio", 0, 1)
}
# TrainConfig.mixed_precision; "auto": what the hardware runs natively (hardware.py)
TRAINING_PRECISIONS = ("auto", "no", "bf16", "fp16")


@dataclass
class PruneConfig(_Settings):
    """Block movement pruning (Sanh et al. 2020; Lagunas et al. 2021)."""

    sparsity: Number = 0.5  # fraction of the encoder's Linear weights removed in the final model
    binarizer: str = "topk"  # "topk" | "sigmoid"
    block_size: int = 32  # square blocks for attention matrices; FFN pruned by neuron
    score_lr: Number = 1e-2
    initial_warmup: Number = 0.1  # fraction of steps at zero sparsity
    final_warmup: Number = 0.2  # fraction of steps at the final sparsity
    penalty: Number = 1.0  # L1 weight on sigmoid scores (sigmoid binariser only)


@dataclass
class MeasureConfig(_Settings):
    """How every row is timed: same process, interleaved, warm-up, median of `repeats`."""

    repeats: int = 5
    warmup: int = 2
    texts: int = 256  # test texts timed per row at batch 32 (8 batches per repeat)
    batch1_texts: int = 64  # the first N of them timed one by one: 64 calls per repeat give a stable
    # median, and all 256 made batch 1 two thirds of the grid's timing session (512 s of 754 s in cpu-quick)
    threads: int = 2
    country: str = "IND"  # ISO code for CodeCarbon's grid carbon intensity


@dataclass
class TransferConfig(_Settings):
    """Unlabelled text the teacher labels for distillation (see transfer.py); off while `path` is None."""

    path: str | None = None  # a CSV (column `text_col`) or a text file with one text per line
    text_col: str | None = None
    label_col: str | None = None  # optional: only to report how often the teacher agrees with it
    window_words: int = 12  # pieces of about a headline's length (MahaNews headlines: median 12 words)
    ngram: int = 8  # a piece sharing this many consecutive words with a dev/test text is dropped
    max_pieces: int | None = None  # a seeded random sample of at most this many pieces
    use_labels: bool = False  # train on the file's labels too (hard labels), not only the teacher's
    seed: int = 42


@dataclass
class IntermediateConfig(_Settings):
    """The intermediate-layer terms a preset's `+mid` rows add (TrainConfig's fields of the same names)."""

    hidden_weight: Number = 1.0  # kd_hidden_weight: hidden states (cosine, through a projection where widths differ)
    attention_weight: Number = 1.0  # kd_attention_weight: MiniLMv2 attention relations
    relation_heads: int = 12
    layer_map: list[int] | None = None  # kd_layer_map


BINARIZERS = ("topk", "sigmoid")  # PruneConfig.binarizer (pruning/masks.py implements them)

ROWS = ("baseline", "baseline+bf16", "baseline+int8", "mp", "kd", "p25", "p50", "p75", "p25+kd", "p50+kd", "p75+kd",
        "p25+kd+mp", "best+int8", "best+onnx",
        )


@dataclass
class GridConfig(_Settings):
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
    # epochs of a `kdlN` row (the trained `kd` student cut to N layers, then distilled): it starts from layers that
    # already serve the task, so it has a schedule of its own (the shipped presets but `paper` set 4)
    cut_epochs: Number = 1.0
    # the static-embedding student (`static` rows): its table trains too unless freeze_embeddings
    static: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=20, lr=5e-3, freeze_embeddings=False, early_stopping_patience=3))
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
    best_within_points: Number = 1.0
    served_blocks: bool = True  # score and time every compressed row as a user deploys it too
    # the runtime that deploys it: an export backend, or "auto" for the one that serves batches fastest on this CPU
    # (hardware.batch_int8_backend)
    served_backend: str = "auto"
    transfer: TransferConfig = field(default_factory=TransferConfig)  # used by the rows marked +tr
    # what `+aug` adds to a row: teacher-labelled variants of its training texts (per_text must be 1 or more)
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(per_text=4))
    # what `+mid` adds to a layer or pruned student: intermediate-layer terms, each with its weight
    intermediate: IntermediateConfig = field(default_factory=lambda: IntermediateConfig())
    static_pretrain_epochs: Number = 5.0  # what `+pre` adds to a static row: its table pre-trained so many epochs
    # what `+el` adds to a kd row: these shallower sub-networks trained beside it (elastic depth); a kdlN+el row is
    # cut from that student
    elastic_depths: list[int] = field(default_factory=lambda: [2, 3, 4])
    # per-row changes to the transfer section for rows marked +tr, e.g. {"static+tr": {"max_pieces": None}}: the
    # cap keeps the transformer students' training short, while a static student's steps cost milliseconds, so
    # every piece costs it only the teacher's labelling
    transfer_overrides: dict[str, dict] = field(default_factory=dict)
    measure: MeasureConfig = field(default_factory=MeasureConfig)


# `optimize`: how a model's dev score is compared with the teacher's, and which recipes it tries by default
METRICS = ("accuracy", "macro-f1")
# the pass rule: the dev point estimate; the bootstrap's share of resamples within budget at least 1 - the false-pass
# target (search.scoring.FALSE_PASS_TARGET: a false-pass risk of at most 10%); or the 95% interval's lower bound
DECISIONS = ("point", "risk", "interval")
# Rows of the grid's registry, from the teacher-sized layer student down to the static table: depth, width,
# both, and no transformer at all (each gets `+tr` when a transfer set is given). The 4- and 3-layer students are
# cut from the trained `kd` student (kdlN, the preset's `cut_epochs`): the search trains `kd` once and each of them
# from its layers, which kept more of the teacher than the same depth from the teacher's layers (sentiment:
# reports/levers/sentiment). The 2-layer one is copied from the teacher: cut from `kd`, it kept no more than that
OPTIMIZE_CANDIDATES = ("kd", "kdl4", "kdl3", "kd2", "kdp50", "p25+kd", "p50+kd", "p75+kd", "static")
# the transformer runtimes it measures and may ship: the export backends (export.TRANSFORMER_BACKENDS), each where
# this machine runs it natively (hardware.unsupported_reason: openvino-bf16 needs native bf16, the OpenVINO ones the
# openvino package); a static student runs `static`. torch's bf16 and int8 are left out: no exported folder runs
# them, so a verdict in them would judge a model that cannot ship. In the table's order, those that need native
# bf16 last: the order optimize has always timed them in, which keys its shapes' timings (a resumed run reuses them)
OPTIMIZE_RUNTIMES = tuple(
    sorted((n for n in BACKENDS if n in EXPORT_BACKENDS and is_transformer(n)),
           key=lambda n: "native-bf16" in SPECS[n].needs))


@dataclass
class OptimizeConfig(_Settings):
    """What `optimize` looks for: the fastest model whose dev score is within `budget` points of the teacher's."""

    budget: Number = 1.0  # points of `metric` (0-100 scale) a model may lose against the teacher on dev
    metric: str = "accuracy"  # "accuracy" | "macro-f1"
    batch_size: int = 32  # the batch every latency is measured at: the user's serving batch
    time_budget_s: float | None = None  # wall-clock seconds for the whole run (checked between trials); None: none
    # "point" by default: it is the grid's rule for `best`, and a dev split of a few hundred texts gives a bootstrap
    # interval wider than a 1-point budget, so "risk" and "interval" fail most dev splits of a model as accurate as the
    # teacher that errs on other texts (reports/optimize/dev-size measures how often each rule passes which model, per
    # dev size)
    decide: str = "point"
    candidates: list[str] = field(default_factory=lambda: list(OPTIMIZE_CANDIDATES))
    runtimes: list[str] | None = None  # None: every runtime this machine runs natively (optimize.native_runtimes)
    preset: str = "cpu-quick"  # the grid preset whose training and measurement settings the recipes use


_S = TypeVar("_S", bound=_Settings)
# what a value must be, by pydantic's error type (presets are YAML: "text", "a mapping", "true or false")
_EXPECTED = {
    "float_type": "a number", "int_type": "a whole number", "bool_type": "true or false", "string_type": "text",
    "list_type": "a list", "dict_type": "a mapping"
}


def from_dict(cls: type[_S], values: Any, where: str) -> _S:
    """Settings `cls` from a preset's mapping (`where` names it: its file, and its key there for a part of
    one), validated by pydantic; the first fault is one `MahaError` line naming the key."""
    from pydantic import ValidationError

    try:
        return _adapter(cls).validate_python(values)
    except ValidationError as exc:
        raise MahaError(_one_line(cls, exc.errors()[0], where)) from None


@cache
def _adapter(cls: type[_Settings]) -> TypeAdapter:
    """The validator of `cls`, built once per process (building one takes milliseconds)."""
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def _one_line(cls: type[_Settings], error: Mapping[str, Any], where: str) -> str:
    """pydantic's error as the line the user reads: file, dotted key, the value given and what it must be."""
    loc = [str(part) for part in error["loc"]]
    value = error["input"]
    if error["type"] == "unexpected_keyword_argument":
        section = cls()
        for key in loc[:-1]:
            section = getattr(section, key)
        known = ", ".join(sorted(f.name for f in fields(section)))
        return f"{_at(where, loc[:-1])}: unknown key '{loc[-1]}' (known: {known})"
    if error["type"] == "dataclass_type":
        return f"{_at(where, loc)}: expected a mapping, got {type(value).__name__}"
    if loc and loc[-1] == "[key]":
        return f"{_at(where, loc[:-2])}: bad key {value!r} (expected text)"
    return f"{_at(where, loc)}: bad value {value!r} (expected {_EXPECTED.get(error['type'], error['msg'])})"


def _at(where: str, keys: list[str]) -> str:
    """`where` and the dotted key inside it, as the user would find it in the file."""
    return f"{where}: {'.'.join(keys)}" if keys else where


__all__ = [
    "DataConfig", "TrainConfig", "OptimizeConfig", "METRICS", "DECISIONS", "OPTIMIZE_CANDIDATES", "OPTIMIZE_RUNTIMES",
    "PruneConfig", "MeasureConfig", "TransferConfig", "GridConfig", "ROWS", "from_dict", "Bounds", "TRAIN_RANGES",
    "TRAINING_PRECISIONS", "BINARIZERS", "BACKENDS"
]
