"""`optimize`'s winner shipped: exported in the runtime it was chosen in, its vocabulary trimmed to its training
corpus, and the exported folder scored on test, the only time a search reads the test split.

Why a module of its own: the export is the one step of a search that leaves the dev split, so it is kept apart
from the search that must never read test.
"""

from __future__ import annotations

from pathlib import Path

from ..infer.numpy_engine import is_static
from ..study.context import RecipeContext
from ..study.rowspec import RowSpec
from .candidates import corpus_names, training_texts


def export_winner(out: Path, model_dir: str, runtime: str, ctx: RecipeContext, spec: RowSpec | None) -> dict:
    """Export the winner in the runtime it was chosen in (its fastest passing one: every runtime a verdict rests
    on ships, `SHIPPABLE`), vocabulary trimmed to its training corpus; the exported folder is scored on TEST
    here, the only time test is read."""
    from ..deploy.export import export

    corpus = None if is_static(model_dir) else training_texts(ctx, spec)
    manifest = export(Path(model_dir), out / "export", backend=runtime, corpus=corpus, corpus_names=corpus_names(spec),
                      splits=ctx.splits, max_length=ctx.max_length, calibration_texts=ctx.calibration,
                      trust_remote_code=ctx.trust_remote_code)
    return {
        "folder": str(out / "export"), "backend": runtime, "test": manifest.get("test"),
        "disk_mb": manifest["disk_bytes"] / 2**20
    }
