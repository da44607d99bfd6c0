"""What a recipe reads to name and build its row's model: one typed context, made once per run by the grid
(`grid.Grid.run`) and by `optimize`, and handed to the builders of `recipes.KINDS`.

It comes in two parts because a run's settings are known before its data is read: `RowSettings` (the
preset as given, the teacher as given, the dataset) is all that decides whether a finished row or trial is
reused, so a resumed run compares records before it loads anything; `RecipeContext` adds what building
needs (the splits, the fine-tuned teacher, the transfer sets, where served files go). Neither runs a
recipe: `recipes.build` does, for the grid and `optimize` alike, so neither drives the other.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from ..core.config import DataConfig, GridConfig, MeasureConfig, TransferConfig
from ..core.errors import MahaError
from ..data.splits import Splits
from ..data.transfer import TransferSet, for_splits
from ..infer.calibration import calibration_sample
from ..models.load import check_model_dir, config_labels, load_config
from ..train.precision import training_precision

_console = Console(stderr=True, markup=False, highlight=False)


@dataclass
class RowSettings:
    """The run's settings as given, and each row's share of them once computed (`recipes.settings_of` fills
    `known`): a row's settings are asked for by the resume check, the row's record, `best`'s and a kdpNN's
    own settings, and optimize's shape and trial keys, so they are computed once per row."""

    cfg: GridConfig
    teacher: str  # as given: the teacher row's settings name it
    dataset: str
    known: dict[str, dict] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class RecipeContext:
    """What the builders of `recipes.KINDS` read, and the run's shared answers (transfer sets read once,
    the calibration sample, the finished rows a kdpNN prunes)."""

    settings: RowSettings
    teacher_dir: str  # the fine-tuned teacher: the teacher itself when it knows the labels, else models/baseline
    splits: Splits
    data: DataConfig  # what `splits` was loaded with: every built folder records it
    trust_remote_code: bool = False  # the user let the teacher run its folder's code: so may every model built from it
    cache: Path | None = None  # where served files (ONNX, OpenVINO) go: None, the shared cache ($MAHACOMPRESS_CACHE)
    precision: str = "fp32"  # the training precision of `mp` rows on this machine
    teacher_layers: int | None = None  # the teacher's shape, which a student's must fit (`recipes.left_out`)
    teacher_hidden: int | None = None
    calibration: list[str] = field(default_factory=list)  # training texts calibrated int8 files learn ranges from
    finished: dict[str, list[str]] = field(default_factory=dict)  # a finished row's model folders, by seed
    transfers: dict[str, TransferSet] = field(default_factory=dict, repr=False)  # by transfer configuration

    @property
    def cfg(self) -> GridConfig:
        return self.settings.cfg

    @property
    def teacher(self) -> str:
        return self.settings.teacher

    @property
    def max_length(self) -> int:
        """The baseline's: every model is scored and timed with it."""
        return self.cfg.finetune.max_length

    @property
    def measure(self) -> MeasureConfig:
        return self.cfg.measure

    def transfer_set(self, cfg: TransferConfig) -> TransferSet:
        """The transfer set of `cfg` beside the splits, read once per configuration; pieces overlapping a dev or
        test text are dropped and counted."""
        key = json.dumps(asdict(cfg), sort_keys=True)
        if key not in self.transfers:
            self.transfers[key] = for_splits(cfg, self.splits)
            c = self.transfers[key].counts
            _console.print(
                f"transfer set {c['file']}: {c['kept']} pieces of {c['pieces']} used ({c['dropped_overlap']} "
                f"overlapping dev/test texts, {c['dropped_labelled']} labelled training texts and "
                f"{c['dropped_duplicate']} duplicates dropped, {c['dropped_by_cap']} over the cap)")
        return self.transfers[key]


def open_context(settings: RowSettings, splits: Splits, data: DataConfig, models: Path, *,
                 trust_remote_code: bool = False, cache: Path | None = None) -> RecipeContext:
    """The context of a run over `splits`: the teacher used as it is when it already knows the labels, else
    the `baseline` row's folder under `models` (which `recipes.build` of that row makes)."""
    teacher = settings.teacher
    check_model_dir(teacher, trust_remote_code=trust_remote_code)
    config = load_config(teacher, trust_remote_code=trust_remote_code)
    teacher_dir = str(models / "baseline")
    if config_labels(config) == splits.labels:
        if settings.cfg.row_seeds.get("baseline", 1) > 1:
            raise MahaError(f"row_seeds.baseline: {teacher} already knows the labels, so it is not fine-tuned here "
                            "and has one seed; drop row_seeds.baseline or pass the model it was fine-tuned from")
        teacher_dir = teacher
    return RecipeContext(settings, teacher_dir, splits, data, trust_remote_code=trust_remote_code, cache=cache,
                         precision=training_precision("auto", "cuda" if torch.cuda.is_available() else "cpu"),
                         teacher_layers=getattr(config, "num_hidden_layers", None), teacher_hidden=getattr(
                             config, "hidden_size", None), calibration=calibration_sample(splits.train.texts))
