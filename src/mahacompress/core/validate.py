"""Checks that run before any work: option ranges, input files, output paths (model sources: `model_source`).

Why a module of its own: every command (and the library calls behind them) must refuse bad input
*before* weights are loaded or anything is trained or written, with one `MahaError` line naming what
is wrong and where. The CLI calls these first (and `grid.reproduce` before its first row), so a script
calling `reproduce` gets the same answer. Nothing here creates a file or folder.
"""

from __future__ import annotations

import os
import re
from fnmatch import fnmatch
from pathlib import Path

from .config import (
    BINARIZERS,
    DECISIONS,
    METRICS,
    OPTIMIZE_RUNTIMES,
    TRAIN_RANGES,
    TRAINING_PRECISIONS,
    OptimizeConfig,
    PruneConfig,
    TrainConfig,
)
from .errors import MahaError
from .model_source import check_readable, model_config

# Models whose position ids start after the padding index (the first 2 positions are unusable).
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}

# ---------------------------------------------------------------------------- options


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False) -> None:
    """Refuse `value` outside [lo, hi] (open ends where asked), naming the option the user typed."""
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi or value != value:  # value != value: NaN
        if hi is None:
            wanted = f"above {lo:g}" if lo_open else f"at least {lo:g}"
        elif lo is None:
            wanted = f"below {hi:g}" if hi_open else f"at most {hi:g}"
        else:
            wanted = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise MahaError(f"{name} {value:g}: expected a value {wanted}")


def check_train_config(cfg: TrainConfig, where: str | None = None) -> None:
    """The training loop's settings within `config.TRAIN_RANGES`, and a known mixed precision.

    Errors name the command-line option, or `where.field` for a preset (e.g. "tiny.yaml: distill.kd_alpha").
    """
    for field, bounds in TRAIN_RANGES.items():
        check_range(f"{where}.{field}" if where else bounds.option, getattr(cfg, field), bounds.lo, bounds.hi,
                    lo_open=bounds.lo_open)
    aug = cfg.augment
    for field, value, lo, hi in (("per_text", aug.per_text, 0, None), ("replace_rate", aug.replace_rate, 0, 1),
                                 ("delete_rate", aug.delete_rate, 0, 1), ("crop_rate", aug.crop_rate, 0, 1),
                                 ("neighbours", aug.neighbours, 1, None), ("vocabulary", aug.vocabulary, 2,
                                                                           None), ("ngram", aug.ngram, 1, None)):
        check_range(f"{where}.augment.{field}" if where else "--augment" if field == "per_text" else f"augment.{field}",
                    value, lo, hi)
    if cfg.mixed_precision not in TRAINING_PRECISIONS:
        name = f"{where}.mixed_precision" if where else "--mixed-precision"
        raise MahaError(f"{name} {cfg.mixed_precision}: expected no, bf16 or fp16")


def check_layer_map(layer_map: list[int], student_layers: int, teacher_layers: int, name: str = "--layer-map") -> None:
    """One teacher layer (0-based, within its depth) for each student layer, before any training starts."""
    if len(layer_map) != student_layers:
        raise MahaError(f"{name} {','.join(map(str, layer_map))}: {len(layer_map)} teacher layers for a student of "
                        f"{student_layers}; give one per student layer")
    outside = [i for i in layer_map if not 0 <= i < teacher_layers]
    if outside:
        raise MahaError(f"{name} {','.join(map(str, layer_map))}: layer {outside[0]} is outside the teacher's "
                        f"{teacher_layers} layers (0..{teacher_layers - 1})")


def check_prune_config(cfg: PruneConfig) -> None:
    """Pruning settings, checked here (no torch) so a bad `prune` option is refused before anything loads."""
    if not 0.0 < cfg.sparsity < 1.0:
        raise MahaError(f"sparsity {cfg.sparsity}: expected a fraction strictly between 0 and 1")
    if cfg.binarizer not in BINARIZERS:
        raise MahaError(f"binarizer '{cfg.binarizer}': expected one of {', '.join(BINARIZERS)}")
    if cfg.block_size < 1:
        raise MahaError(f"block size {cfg.block_size}: expected a positive integer")
    if not (0 <= cfg.initial_warmup and 0 <= cfg.final_warmup and cfg.initial_warmup + cfg.final_warmup <= 1):
        raise MahaError(f"warm-up fractions {cfg.initial_warmup} + {cfg.final_warmup}: expected >= 0, summing to <= 1")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Refuse a value that is not one of `choices`."""
    if value not in choices:
        raise MahaError(f"{name} {value}: expected one of {', '.join(choices)}")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(name: str, text: str) -> float:
    """Seconds in a duration such as `90m`, `2h`, `3600s` or `1h30m` (a bare number is refused: minutes or
    seconds would be a guess)."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _DURATION_PART.sub("", compact):
        raise MahaError(f"{name} {text}: expected a duration such as 90m, 2h, 3600s or 1h30m")
    return sum(float(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(compact))


def check_optimize_config(cfg: OptimizeConfig) -> None:
    """`optimize`'s own options (the recipes' training settings are the preset's, checked where it loads)."""
    check_range("--budget", cfg.budget, 0)
    check_choice("--metric", cfg.metric, METRICS)
    check_choice("--decide", cfg.decide, DECISIONS)
    check_range("--batch-size", cfg.batch_size, 1)
    if cfg.time_budget_s is not None and not cfg.time_budget_s > 0:  # nan too; no time for any work is no run
        raise MahaError(f"--time-budget {cfg.time_budget_s:g} s: expected more than zero, a duration such as 90m, "
                        "2h or 3600s")
    if not cfg.candidates:
        raise MahaError("--candidates: name at least one row of the grid's registry")
    for runtime in cfg.runtimes or ():
        check_choice("--runtimes", runtime, OPTIMIZE_RUNTIMES)


# ---------------------------------------------------------------------------- files


def check_input_file(path: str | Path, what: str = "file") -> Path:
    """An existing, readable regular file (a folder or an unreadable file is named as such)."""
    path = Path(path)
    if not path.exists():
        raise MahaError(f"{path}: {what} not found")
    if not path.is_file():
        raise MahaError(f"{path}: expected a {what}, found a folder")
    check_readable(path)
    return path


# What mahacompress itself puts in the folders it writes, and what versions before the derived-file cache
# (backends/cache.py) left beside a model (ONNX files and their records, the OpenVINO folder), so such a
# folder can still be replaced; anything else in a folder means the user put it there.
_OUTPUT_ENTRIES = ("*.json", "*.safetensors", "*.bin", "*.onnx", "*.onnx.data", "*.py", "*.md", "*.model", "*.joblib",
                   "vocab.txt", "merges.txt", "requirements.txt", "openvino-int8", "__pycache__",
                   )


def check_output_dir(path: str | Path, marker: str, *, inputs: tuple[str | Path | None, ...] = (),
                     grows: bool = False) -> Path:
    """A folder we may create, replace or (`grows`: the grid's out folder) add to, checked before any work.

    Replacing a folder deletes what it held, so an existing non-empty folder must be a previous output of
    the same kind: it holds `marker` (the record the command writes) and nothing mahacompress does not
    write. A folder that grows in place (and resumes) needs only its marker. The current folder, the home
    folder, a filesystem root, an input (model, data, corpus) or a folder holding one are refused whatever
    they hold, as is an existing file. The nearest existing parent must be writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MahaError(f"{path}: is an existing file; the output must be a folder (choose another name)")
    _refuse_precious(path, inputs)
    entries = sorted(path.iterdir()) if path.is_dir() else []
    if entries and not (path / marker).is_file():
        raise MahaError(f"{path}: holds files but no {marker}, so it is not an output of this command; "
                        f"writing there could destroy them (choose a new or empty folder)")
    unexpected = [e.name for e in entries if not any(fnmatch(e.name, p) for p in _OUTPUT_ENTRIES)]
    if unexpected and not grows:
        raise MahaError(f"{path}: holds {unexpected[0]}, which mahacompress did not write; replacing the folder "
                        f"would delete it (move it away or choose another folder)")
    _writable_parent(path if path.exists() else path.parent)
    return path


def _refuse_precious(path: Path, inputs: tuple[str | Path | None, ...]) -> None:
    """Folders no output may be: replacing them would take the user's other files or the inputs with them."""
    where = path.expanduser().resolve()
    special = {
        Path.cwd().resolve(): "the current folder",
        Path.home().resolve(): "the home folder",
        Path(where.anchor): "a filesystem root"
    }
    if where in special:
        raise MahaError(
            f"{path}: is {special[where]}; an output folder is replaced as a whole, so name a new folder for it")
    for given in filter(None, inputs):
        source = Path(given).expanduser()
        if not source.exists():
            continue  # a hub id or a named dataset: nothing local to protect
        source = source.resolve()
        if where == source:
            raise MahaError(f"{path}: is the input {given} itself; write the output to another folder")
        if where in source.parents:
            raise MahaError(
                f"{path}: holds the input {given}, which writing the output there would delete; choose another folder")


def check_output_file(path: str | Path) -> Path:
    """A file we may write: not an existing folder, and its nearest existing parent writable."""
    path = Path(path)
    if path.is_dir():
        raise MahaError(f"{path}: is an existing folder; the output must be a file name")
    _writable_parent(path.parent)
    return path


def _writable_parent(path: Path) -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise MahaError(f"{probe}: is a file, so nothing can be written below it")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise MahaError(f"{probe}: permission denied (cannot write there; choose another output folder)")


def check_max_length(name: str, max_length: int) -> None:
    """--max-length within the model's position embeddings (known without loading when `name` is a folder)."""
    check_range("--max-length", max_length, 1)
    if not Path(name).is_dir():
        return  # a hub id: its config is not at hand without downloading
    cfg = model_config(name)
    limit = cfg.get("max_position_embeddings")
    if not isinstance(limit, int):
        return
    limit -= 2 if cfg.get("model_type") in _OFFSET_POSITIONS else 0
    if max_length > limit:
        raise MahaError(f"--max-length {max_length}: {name} has {limit} position embeddings; use at most {limit}")


def check_block_size(name: str, block: int) -> None:
    """Pruning blocks must tile the attention matrices (known without loading when `name` is a folder)."""
    check_range("--block-size", block, 1)
    if not Path(name).is_dir():
        return
    cfg = model_config(name)
    hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0:
        width = heads * (hidden // heads)
        if hidden % block or width % block:
            raise MahaError(f"--block-size {block} does not divide the attention matrices ({width}x{hidden}) of {name}")


__all__ = [
    "check_range", "check_train_config", "check_layer_map", "check_prune_config", "check_choice", "parse_duration",
    "check_optimize_config", "check_input_file", "check_output_dir", "check_output_file", "check_max_length",
    "check_block_size"
]
