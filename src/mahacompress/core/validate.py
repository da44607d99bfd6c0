"""Checks that run before any work: option ranges, input files, output paths, model sources.

Why a module of its own: every command (and the library calls behind them) must refuse bad input
*before* weights are loaded or anything is trained or written, with one `MahaError` line naming what
is wrong and where. The CLI calls these first (and `grid.reproduce` before its first row), so a script
calling `reproduce` gets the same answer. Nothing here creates a file or folder.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlparse

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
from .files import EXPORT_RECORD, PRUNING_RECORD, TRAINING_RECORD

HUB_TIMEOUT_S = 10.0  # how long a hub id may take to prove the hub reachable before we give up
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
# Models whose position ids start after the padding index (the first 2 positions are unusable).
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}
# The model_types of mahacompress's own classes (pruning/modeling_pruned.py, modeling_static.py): their folders
# name that code in `auto_map`, but `models.register_own_classes` registers the classes with transformers, so
# they load without running any code from the folder (tests/test_remote_code.py checks the two lists agree).
OWN_MODEL_TYPES = ("pruned_bert", "pruned_roberta", "pruned_xlm-roberta", "pruned_camembert", "mahacompress-static")


# ---------------------------------------------------------------------------- options


def check_range(
    name: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
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
        check_range(
            f"{where}.{field}" if where else bounds.option,
            getattr(cfg, field),
            bounds.lo,
            bounds.hi,
            lo_open=bounds.lo_open,
        )
    if cfg.mixed_precision not in TRAINING_PRECISIONS:
        name = f"{where}.mixed_precision" if where else "--mixed-precision"
        raise MahaError(f"{name} {cfg.mixed_precision}: expected no, bf16 or fp16")


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
    if cfg.time_budget_s is not None:
        check_range("--time-budget (seconds)", cfg.time_budget_s, 0)
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
    _readable(path)
    return path


# What mahacompress itself puts in the folders it writes, and what versions before the derived-file cache
# (backends/cache.py) left beside a model (ONNX files and their records, the OpenVINO folder), so such a
# folder can still be replaced; anything else in a folder means the user put it there.
_OUTPUT_ENTRIES = (
    "*.json",
    "*.safetensors",
    "*.bin",
    "*.onnx",
    "*.onnx.data",
    "*.py",
    "*.md",
    "*.model",
    "*.joblib",
    "vocab.txt",
    "merges.txt",
    "requirements.txt",
    "openvino-int8",
    "__pycache__",
)


def check_output_dir(
    path: str | Path, marker: str, *, inputs: tuple[str | Path | None, ...] = (), grows: bool = False
) -> Path:
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
        raise MahaError(
            f"{path}: holds files but no {marker}, so it is not an output of this command; "
            f"writing there could destroy them (choose a new or empty folder)"
        )
    unexpected = [e.name for e in entries if not any(fnmatch(e.name, p) for p in _OUTPUT_ENTRIES)]
    if unexpected and not grows:
        raise MahaError(
            f"{path}: holds {unexpected[0]}, which mahacompress did not write; replacing the folder "
            f"would delete it (move it away or choose another folder)"
        )
    _writable_parent(path if path.exists() else path.parent)
    return path


def _refuse_precious(path: Path, inputs: tuple[str | Path | None, ...]) -> None:
    """Folders no output may be: replacing them would take the user's other files or the inputs with them."""
    where = path.expanduser().resolve()
    special = {
        Path.cwd().resolve(): "the current folder",
        Path.home().resolve(): "the home folder",
        Path(where.anchor): "a filesystem root",
    }
    if where in special:
        raise MahaError(
            f"{path}: is {special[where]}; an output folder is replaced as a whole, so name a new folder for it"
        )
    for given in filter(None, inputs):
        source = Path(given).expanduser()
        if not source.exists():
            continue  # a hub id or a named dataset: nothing local to protect
        source = source.resolve()
        if where == source:
            raise MahaError(f"{path}: is the input {given} itself; write the output to another folder")
        if where in source.parents:
            raise MahaError(
                f"{path}: holds the input {given}, which writing the output there would delete; choose another folder"
            )


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


def _readable(path: Path) -> None:
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        raise MahaError(f"{path}: permission denied (the file exists but cannot be read)")


# ---------------------------------------------------------------------------- model sources


def check_model(name: str, *, trust_remote_code: bool = False) -> None:
    """A model source that can be loaded: a sound local folder, or a reachable hub id.

    Local folders are checked without loading weights: config.json valid JSON, no Python code to run
    unless `trust_remote_code` (see `needs_remote_code`), every weights file readable with an intact
    header, tokenizer files present. A name that is neither a folder nor
    shaped like `owner/name` (one `/`, not starting with `.`, `/` or `~`) fails at once, never asking
    the hub; an `owner/name` with no local folder fails within HUB_TIMEOUT_S when the hub cannot be
    reached, instead of a traceback after transformers' retries, and its message says first that no
    such local folder exists (a mistyped `out/model` is far likelier than a hub id).
    """
    path = Path(name).expanduser()
    if path.exists():
        _check_model_folder(path, trust_remote_code)
    elif not _HUB_ID.fullmatch(name):
        raise MahaError(f"{name}: no such model folder, and not a Hugging Face hub id (owner/name)")
    else:
        _check_hub_id(name)


def _check_model_folder(path: Path, trust_remote_code: bool) -> None:
    if not path.is_dir():
        raise MahaError(f"{path}: expected a model folder, found a file")
    _readable(path)
    if exported_manifest(path) is not None:
        raise MahaError(
            f"{path}: a deployable folder written by `mahacompress export` (ONNX, no PyTorch weights); "
            f"predict, evaluate and serve run it, other commands need the classifier folder it was "
            f"exported from"
        )
    code = needs_remote_code(model_config(path))
    if code and not trust_remote_code:
        raise remote_code_refusal(str(path), code)
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    if not weights:
        raise MahaError(f"{path}: no model weights (*.safetensors or *.bin) in the folder")
    for w in weights:
        _readable(w)
        _check_weights(w)
    tok = [path / n for n in ("tokenizer.json", "tokenizer_config.json") if (path / n).is_file()]
    if not tok:
        raise MahaError(f"{path}: no tokenizer files (tokenizer.json / tokenizer_config.json) in the folder")
    for t in tok:
        _readable(t)


def needs_remote_code(cfg: dict) -> str | None:
    """The code a folder's config.json would have transformers import and run, or None when it needs none.

    Such a config names classes in `auto_map` (a `.py` file in the folder or another hub repository) and a
    `model_type` that neither transformers nor mahacompress (`OWN_MODEL_TYPES`) provides a class for; with a
    known model_type, transformers loads its own class and ignores `auto_map` unless asked to trust it.
    """
    auto_map, model_type = cfg.get("auto_map"), cfg.get("model_type")
    if not auto_map or model_type in OWN_MODEL_TYPES:
        return None
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING  # imports torch: only for an auto_map

    if isinstance(model_type, str) and model_type in CONFIG_MAPPING:
        return None
    if isinstance(auto_map, dict):
        return str(
            auto_map.get("AutoModelForSequenceClassification")
            or auto_map.get("AutoConfig")
            or next(iter(auto_map.values()))
        )
    return str(auto_map)


def remote_code_refusal(name: str, code: str | None = None) -> MahaError:
    """The one line for a model that runs its own Python code when loaded, and the user did not ask for that
    (a local folder names the code; a hub id's config is only seen by transformers, which refuses it)."""
    what = (
        f"its config.json names Python code to run (auto_map: {code})"
        if code
        else "its config names Python code to run"
    )
    return MahaError(f"{name}: {what}; pass --trust-remote-code if you trust this model")


def exported_manifest(name: str | Path) -> dict | None:
    """export.json of a folder `mahacompress export` wrote (no config.json beside it), checked; else None.

    Such a folder runs with its own runtime (runtime.Classifier: onnxruntime or OpenVINO, its tokenizer.json,
    the labels and sequence length of its manifest), so predict and evaluate run it as it runs deployed.
    """
    folder = Path(name).expanduser()
    path = folder / EXPORT_RECORD
    if not path.is_file() or (folder / "config.json").is_file():
        return None
    manifest = _read_json(path)
    missing = [
        k
        for k in ("labels", "model_file", "max_length", "pad_id", "pad_token")
        if not isinstance(manifest, dict) or k not in manifest
    ]
    if missing:
        raise MahaError(f"{path}: not a manifest written by `mahacompress export` (no {missing[0]}); export again")
    for file in (
        manifest["model_file"],
        *([manifest["weights_file"]] if "weights_file" in manifest else []),
        "tokenizer.json",
    ):
        if not (folder / file).is_file():
            raise MahaError(f"{folder / file}: missing from the exported folder; export again")
        _readable(folder / file)
    return manifest


def model_config(path: str | Path) -> dict:
    """config.json of a local model folder as a dict, with one-line errors for missing or broken JSON."""
    cfg_path = Path(path) / "config.json"
    if not cfg_path.is_file():
        raise MahaError(f"{cfg_path}: missing (not a Hugging Face model folder)")
    cfg = _read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise MahaError(f"{cfg_path}: expected a JSON object, found {type(cfg).__name__}")
    return cfg


def recorded_max_length(name: str | Path) -> int | None:
    """The sequence length a model folder was trained with (`train_config.max_length` of its training.json
    or pruning.json), so evaluate and predict score a model as its training and the grid did; None for a hub
    id or a folder without such a record."""
    for record in (TRAINING_RECORD, PRUNING_RECORD):
        path = Path(name).expanduser() / record
        if path.is_file():
            info = _read_json(path)
            length = (info.get("train_config") or {}).get("max_length") if isinstance(info, dict) else None
            return length if isinstance(length, int) and not isinstance(length, bool) else None
    return None


def _read_json(path: Path) -> object:
    """A readable JSON file's content; unreadable or broken JSON is a one-line error naming the file."""
    _readable(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MahaError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None


def _check_weights(path: Path) -> None:
    """A cheap integrity check: a safetensors header that fits the file, or a complete zip (torch.save)."""
    size = path.stat().st_size
    if path.suffix == ".bin":
        if not zipfile.is_zipfile(path):
            raise MahaError(f"{path}: corrupt or truncated weights (not a complete PyTorch archive)")
        return
    try:
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(fh.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError) as exc:
        raise MahaError(f"{path}: corrupt weights (not a safetensors file: {str(exc).splitlines()[0]})") from None
    if 8 + n + end > size:
        raise MahaError(f"{path}: truncated weights ({size} bytes, the header promises {8 + n + end})")


def _check_hub_id(name: str) -> None:
    """A hub id in the local cache passes; otherwise the hub must answer within HUB_TIMEOUT_S."""
    try:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import ENDPOINT, HF_HUB_OFFLINE
    except ImportError:  # pragma: no cover - a transformers dependency
        return
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    missing = f"{name}: no such model folder here, and no hub model of that name could be had"
    advice = "check the path, or download the hub model where there is network and pass its folder"
    if HF_HUB_OFFLINE:
        raise MahaError(f"{missing} (not in the local Hugging Face cache, and HF_HUB_OFFLINE is set); {advice}")
    host = urlparse(ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=HUB_TIMEOUT_S).close()
    except OSError as exc:
        raise MahaError(
            f"{missing} (the Hugging Face hub, {host}, cannot be reached within {HUB_TIMEOUT_S:g} s: "
            f"{exc.strerror or exc}); {advice}"
        ) from None


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
    "HUB_TIMEOUT_S",
    "check_range",
    "check_train_config",
    "check_prune_config",
    "check_choice",
    "parse_duration",
    "check_optimize_config",
    "check_input_file",
    "check_output_dir",
    "check_output_file",
    "check_model",
    "OWN_MODEL_TYPES",
    "needs_remote_code",
    "remote_code_refusal",
    "exported_manifest",
    "model_config",
    "recorded_max_length",
    "check_max_length",
    "check_block_size",
]
