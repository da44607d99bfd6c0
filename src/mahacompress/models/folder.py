"""What a model folder is: the files that make its checkpoint, their digest, and the one handle every step reads
it through (`ModelFolder`).

A checkpoint is the files transformers loads the model and its tokenizer from; records beside them (training.json,
pruning.json, a model card) say how it was made and change nothing a model computes. The digest names a
checkpoint in the derived-file cache (`infer/cache.py`) and in a trimmed copy's record (`trim.py`), so a changed
checkpoint is never mistaken for the one a file was made from.

One grid row used to open its folder again for every step (scoring each split, the ONNX export, the fused file's
shapes, the parameter count, the sizes): each load re-read the config and tokenizer and re-checked every weights
header. A `ModelFolder` reads each of those once; `ModelFolder.of` hands the same handle to every step of the
process while the folder's files stay as they were, so a step handed a path reuses what an earlier step read.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import MahaError
from ..core.files import EXPORT_RECORD, PRUNING_RECORD, TRAINING_RECORD, TRIM_RECORD
from ..core.model_source import check_model, remote_code_refusal

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

# What a checkpoint is: the files transformers loads the model and its tokenizer from. Records beside
# them (training.json, pruning.json, a model card) say how it was made and change nothing a backend computes.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".py")  # weights (and their index) and the checkpoint's own code
_TOKENIZER_PREFIXES = ("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges", "sentencepiece", "spm")
RECORDS = (TRAINING_RECORD, PRUNING_RECORD, TRIM_RECORD, EXPORT_RECORD)  # how a folder was made, when it says


def checkpoint_files(model_dir: str | Path) -> list[Path]:
    """The files that make the checkpoint: config, weights, modelling code, tokenizer (sorted by name)."""
    return sorted(p for p in Path(model_dir).iterdir() if p.is_file() and (
        p.name == "config.json" or p.suffix in _WEIGHT_SUFFIXES or p.name.startswith(_TOKENIZER_PREFIXES)))


def checkpoint_digest(model_dir: str | Path) -> str:
    """sha256 over the checkpoint files' names and bytes, read once per process while their size and
    modification time stay the same (an e5-small checkpoint is ~0.5 GB)."""
    files = checkpoint_files(model_dir)
    return _digest(tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


@functools.lru_cache(maxsize=64)
def _digest(files: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for path, _, _ in files:
        h.update(Path(path).name.encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


@functools.cache
def register_own_classes() -> None:
    """Register mahacompress's own model classes (pruned, static) with transformers' Auto classes.

    Their folders name these classes in `auto_map` (so they load elsewhere with trust_remote_code=True), which
    transformers would otherwise only satisfy by importing the folder's copy of the code. Registered, the
    classes shipped in this package are used and mahacompress's own outputs load with trust_remote_code=False:
    no code from a model folder runs unless the user asks. Run before any config is read (here and when
    `models/load.py` is imported); once per process.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from .modeling_pruned import PRUNED_CLASSES
    from .modeling_static import StaticConfig, StaticForSequenceClassification

    for config_class, base_class, classifier_class in PRUNED_CLASSES.values():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, base_class, exist_ok=True)
        AutoModelForSequenceClassification.register(config_class, classifier_class, exist_ok=True)
    AutoConfig.register(StaticConfig.model_type, StaticConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(StaticConfig, StaticForSequenceClassification, exist_ok=True)


def load_error(name: str, what: str, exc: Exception) -> MahaError:
    """One line for a failed load; transformers' refusal to run a model's own code (a hub id, whose config
    `model_source.check_model` cannot read beforehand) becomes the line a local folder gets."""
    message = str(exc)
    if "trust_remote_code" in message:
        return remote_code_refusal(name)
    return MahaError(f"{name}: cannot load {what} ({message.splitlines()[0] if message else type(exc).__name__})")


def read_config(name: str, *, trust_remote_code: bool = False, source: str | Path | None = None) -> PretrainedConfig:
    """The config of hub id or folder `name` (read from `source` when given), with one-line errors."""
    from transformers import AutoConfig

    register_own_classes()
    try:
        return AutoConfig.from_pretrained(str(source or name), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise load_error(name, "config", exc) from None


def read_tokenizer(name: str, *, trust_remote_code: bool = False,
                   source: str | Path | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of hub id or folder `name` (read from `source` when given), with one-line errors."""
    from transformers import AutoTokenizer

    register_own_classes()
    try:
        return AutoTokenizer.from_pretrained(str(source or name), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError) as exc:
        raise load_error(name, "tokenizer", exc) from None


def config_labels(config) -> list[str]:
    """A classifier config's labels in id order (what its logits' columns mean); [] when it names none."""
    return [config.id2label[i] for i in range(len(config.id2label))] if config.id2label else []


class ModelFolder:
    """A local classifier folder opened with one `trust_remote_code` setting: its checks run once, and its config,
    labels, records, digest and tokenizer are each read on first use and kept (get one with `ModelFolder.of`).

    `name` is the folder as the caller names it (messages say it so); `path` its resolved path, which every read
    uses. The weights are not kept: every step that runs the model changes it (casts, quantises, trains),
    so each loads its own (`models.load.load_classifier`, which takes the config from here), and what needs only
    their shapes builds them from the config (`models.load.load_skeleton`).
    """

    def __init__(self, name: str, path: Path, trust_remote_code: bool):
        self.name, self.path, self.trust_remote_code = name, path, trust_remote_code
        self._checked = False

    @classmethod
    def of(cls, model_dir: str | Path, *, trust_remote_code: bool = False) -> ModelFolder:
        """The handle of `model_dir`, the same one for every call in this process that names the folder so while
        its files keep their size, times and inode (a changed folder is a new handle, read and checked afresh)."""
        path = Path(model_dir).resolve()
        if not path.is_dir():
            raise MahaError(f"{model_dir}: no such model folder")
        stamp = []
        for file in sorted(p for p in path.iterdir() if p.is_file()):
            stat = file.stat()
            stamp.append((file.name, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino))
        return _opened(str(model_dir), path, trust_remote_code, tuple(stamp))

    def check(self) -> None:
        """Fail with one line unless the folder can be loaded (`model_source.check_model`: config, code to run, every
        weights file's header, tokenizer files); checked once, a failure again on every call."""
        if not self._checked:
            check_model(self.name, trust_remote_code=self.trust_remote_code)
            self._checked = True

    @functools.cached_property
    def config(self) -> PretrainedConfig:
        """The folder's transformers config, shared by every step: read it, never change it (copy it first)."""
        return read_config(self.name, trust_remote_code=self.trust_remote_code, source=self.path)

    @functools.cached_property
    def labels(self) -> list[str]:
        """The classifier's labels in id order (its logits' columns)."""
        return config_labels(self.config)

    @functools.cached_property
    def records(self) -> dict[str, dict]:
        """The records beside the checkpoint that say how it was made (training.json, pruning.json, trim.json,
        export.json), by file name, those present only."""
        records = {}
        for name in RECORDS:
            path = self.path / name
            if path.is_file():
                try:
                    records[name] = json.loads(path.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise MahaError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
        return records

    @functools.cached_property
    def digest(self) -> str:
        """The checkpoint's digest (`checkpoint_digest`)."""
        return checkpoint_digest(self.path)

    @functools.cached_property
    def _tokenizer(self) -> PreTrainedTokenizerBase:
        return read_tokenizer(self.name, trust_remote_code=self.trust_remote_code, source=self.path)

    def tokenizer(self) -> PreTrainedTokenizerBase:
        """A copy of the folder's tokenizer, read once: a fast tokenizer keeps the truncation and padding of its
        last call, which its `backend_tokenizer` then applies, so no two callers share one."""
        return copy.deepcopy(self._tokenizer)


@functools.lru_cache(maxsize=8)
def _opened(name: str, path: Path, trust_remote_code: bool, stamp: tuple) -> ModelFolder:
    """One handle per folder (as named, and where it resolves to), trust setting and state of its files; a handle
    keeps a tokenizer, so a few are kept, the least recently used dropped."""
    return ModelFolder(name, path, trust_remote_code)
