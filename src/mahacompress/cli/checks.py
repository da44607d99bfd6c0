"""The checks commands share before any work (an inference command's options and model, a label map
beside a model), and the output lock a writing command holds until it ends."""

from __future__ import annotations

from pathlib import Path

try:  # typer 0.2x vendors its own copy of click
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer on the real click
    from click import get_current_context

from ..core import model_source
from ..core import validate as check
from ..core.config import BACKENDS, TrainConfig
from ..core.errors import MahaError
from ..core.files import output_lock


def check_label_map(label_map: str | None, model: str | Path, trust_remote_code: bool) -> None:
    """A --label-map beside a model, before any work: a sound map whose renames land on the model's labels
    (a trained model predicts only those)."""
    if label_map is not None:
        from ..data.splits import check_label_map_targets
        from ..infer.evaluate import model_labels

        check_label_map_targets(label_map, model_labels(str(model), trust_remote_code=trust_remote_code), str(model))


def check_inference(model: str, backend: str | None, max_length: int | None,
                    trust_remote_code: bool) -> tuple[str, int]:
    """Options and model source of a command that only runs a model (an exported folder runs as deployed);
    returns the backend to run it with (none named: static for a static-embedding student, else fp32) and
    the sequence length (none named: the one the model was trained with, so a grid row scores as in the grid)."""
    if backend is not None:
        check.check_choice("--backend", backend, BACKENDS)
    if max_length is not None:
        check.check_range("--max-length", max_length, 1)
    manifest = model_source.exported_manifest(model)
    if manifest is not None:
        if backend not in (None, "fp32"):
            raise MahaError(f"--backend {backend}: {model} is an exported folder; it runs with its own runtime "
                            f"({manifest.get('backend', 'its model.onnx')}), so leave --backend out")
        return "fp32", manifest["max_length"]  # unused: it runs with its runtime, at its exported length
    model_source.check_model(model, trust_remote_code=trust_remote_code)
    if max_length is None:
        max_length = model_source.recorded_max_length(model) or TrainConfig.max_length
    check.check_max_length(model, max_length)
    from ..infer import default_backend  # imports torch: only once the options are known to be sound

    return backend or default_backend(model), max_length  # after check_model: the folder's config.json is sound


def one_writer(out: Path) -> None:
    """Hold `out`'s lock (`files.output_lock`) until this command ends, on an error too (click closes the command's
    context then): a second run into the same output is refused while this one writes it."""
    get_current_context().with_resource(output_lock(out))
