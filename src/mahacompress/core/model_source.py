"""A model source checked before it is loaded: a local folder's files, or a hub id's reachability.

Why a module of its own: a model folder is checked without loading it (config.json valid JSON, no Python code
to run unless trusted, weights' headers intact, tokenizer files present) and a hub id within a timeout, so a
command refuses a bad model in one `MahaError` line before torch or transformers load it; it also reads what a
folder records (an exported folder's manifest, the length a model was trained at). `validate` checks the
options and paths around it; nothing here creates a file or folder.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from .errors import MahaError
from .files import EXPORT_RECORD, PRUNING_RECORD, TRAINING_RECORD

HUB_TIMEOUT_S = 10.0  # how long a hub id may take to prove the hub reachable before we give up
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
# The model_types of mahacompress's own classes (pruning/modeling_pruned.py, modeling_static.py): their folders
# name that code in `auto_map`, but `models.register_own_classes` registers the classes with transformers, so
# they load without running any code from the folder (tests/test_remote_code.py checks the two lists agree).
OWN_MODEL_TYPES = ("pruned_bert", "pruned_roberta", "pruned_xlm-roberta", "pruned_camembert", "mahacompress-static")


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
    check_readable(path)
    if exported_manifest(path) is not None:
        raise MahaError(f"{path}: a deployable folder written by `mahacompress export` (ONNX, no PyTorch weights); "
                        f"predict, evaluate and serve run it, other commands need the classifier folder it was "
                        f"exported from")
    code = needs_remote_code(model_config(path))
    if code and not trust_remote_code:
        raise remote_code_refusal(str(path), code)
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    if not weights:
        raise MahaError(f"{path}: no model weights (*.safetensors or *.bin) in the folder")
    for w in weights:
        check_readable(w)
        _check_weights(w)
    tok = [path / n for n in ("tokenizer.json", "tokenizer_config.json") if (path / n).is_file()]
    if not tok:
        raise MahaError(f"{path}: no tokenizer files (tokenizer.json / tokenizer_config.json) in the folder")
    for t in tok:
        check_readable(t)


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
            auto_map.get("AutoModelForSequenceClassification") or auto_map.get("AutoConfig")
            or next(iter(auto_map.values())))
    return str(auto_map)


def remote_code_refusal(name: str, code: str | None = None) -> MahaError:
    """The one line for a model that runs its own Python code when loaded, and the user did not ask for that
    (a local folder names the code; a hub id's config is only seen by transformers, which refuses it)."""
    what = (f"its config.json names Python code to run (auto_map: {code})"
            if code else "its config names Python code to run")
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
        k for k in ("labels", "model_file", "max_length", "pad_id", "pad_token")
        if not isinstance(manifest, dict) or k not in manifest
    ]
    if missing:
        raise MahaError(f"{path}: not a manifest written by `mahacompress export` (no {missing[0]}); export again")
    for file in (manifest["model_file"], *([manifest["weights_file"]] if "weights_file" in manifest else []),
                 "tokenizer.json",
                 ):
        if not (folder / file).is_file():
            raise MahaError(f"{folder / file}: missing from the exported folder; export again")
        check_readable(folder / file)
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
    check_readable(path)
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
            (n, ) = struct.unpack("<Q", fh.read(8))
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
        raise MahaError(f"{missing} (the Hugging Face hub, {host}, cannot be reached within {HUB_TIMEOUT_S:g} s: "
                        f"{exc.strerror or exc}); {advice}") from None


def check_readable(path: Path) -> None:
    """A path the user named can be read (a folder also entered), or one line saying permission is denied."""
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        raise MahaError(f"{path}: permission denied (the file exists but cannot be read)")


__all__ = [
    "HUB_TIMEOUT_S", "OWN_MODEL_TYPES", "check_model", "needs_remote_code", "remote_code_refusal", "exported_manifest",
    "model_config", "recorded_max_length", "check_readable"
]
