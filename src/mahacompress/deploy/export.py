"""A deployable folder: the model in ONNX (or OpenVINO IR), its tokenizer, labels, a model card, a torch-free
runtime and server.

The folder needs only onnxruntime, tokenizers and numpy to run (and starlette, uvicorn and
prometheus_client to serve it over HTTP; all six in its `requirements.txt`): `runtime.py` inside it loads
`export.json` (labels, sequence length, padding), `tokenizer.json` and `model.onnx`; `server.py` is a copy
of serve.py, the very service `mahacompress serve` runs. The ONNX file is the very file the benchmark backend of the
same name times (the
`onnx-int8-fused` / `onnx-int8` / `onnx` backends), so the served model is the measured one. The
default is `onnx-int8-fused` (ONNX Runtime's transformer graph fusion, then dynamic int8): the fastest
runtime at batch 1 on every model measured, at the accuracy of plain dynamic int8 (reports/runtimes);
its fused operators are onnxruntime's own, so the folder still needs onnxruntime alone.
onnxruntime's dynamic quantisation covers Gather as well as MatMul, so the (trimmed) embedding rows are
stored in 8 bits too (checked in the exported graph: `word_embeddings.weight_quantized`, uint8).
Optionally the vocabulary is trimmed first (trim.py), which is what makes the multilingual e5 small.

`openvino-int8` ships NNCF's calibrated int8 OpenVINO IR (`model.xml` + `model.bin`), built as the
benchmark's `openvino-int8` backend builds it, from the (trimmed) checkpoint, calibrated on the caller's
texts (the CLI and `optimize`: a seeded sample of 512 training-split texts, as the grid, so it computes what
the grid's timed file computes when the sequence length is the grid's too). The folder needs openvino,
tokenizers and numpy (no onnxruntime). It was the fastest runtime at batch 32 in both committed grids
(`best+openvino` vs `best+fused`, AVX-512 CPUs), so a user (and `optimize`) can ship what measured fastest.
`openvino` and `openvino-bf16` ship the fp32 ONNX graph for OpenVINO to compile at the manifest's
`inference_precision` (f32, or bf16 on CPUs with AVX512-BF16 or AMX, where it is what `optimize` measured;
another CPU runs the same folder in f32): the teacher or a student in bf16 ships without torch.

A static-embedding student (static.py) ships the same way but without ONNX: its folder holds the table
with the head folded in (`piece_logits.npy`, pieces x labels, float32, special rows zeroed; the bias and
the special ids in export.json), written from `static.StaticBackend`'s own `runtime.StaticTable`, so the
folder computes exactly what the benchmarked `static` backend does; `runtime.py` runs it with tokenizers
and numpy, and its requirements.txt has no onnxruntime. `--backend` defaults to `static` for it and any
ONNX backend is refused. The table is left in float32: e5-small's tokenizer trimmed to mahanews-shc's
training split keeps 6529 pieces, so the table is 6529 x 12 x 4 bytes = 0.30 MiB beside a 0.72 MiB
tokenizer.json (measured), and int8 would save 0.22 MiB of a folder of about 1.05 MiB.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..core.config import TrainConfig
from ..core.errors import MahaError
from ..core.files import EXPORT_RECORD, TRAINING_RECORD, staged_dir, write_json, write_text
from ..core.model_source import recorded_max_length
from ..core.registry import CALIBRATED_BACKENDS, EXPORT_BACKENDS, SPECS, is_transformer
from ..infer import runtime
from ..infer.runtime import OPENVINO_ENGINE, STATIC_KIND

# EXPORT_BACKENDS (the registry's: the backends an exported folder runs, the default first): those of a transformer
TRANSFORMER_BACKENDS = tuple(n for n in EXPORT_BACKENDS if is_transformer(n))
# runtime.py needs the runtime's packages; server.py (serve.py) the server's too, in the serve extra's ranges
_SERVER_NEEDS = "starlette>=0.40,<2\nuvicorn>=0.30,<1\nprometheus_client>=0.20,<1\n"
REQUIREMENTS = "onnxruntime>=1.20\ntokenizers>=0.21\nnumpy>=1.26\n" + _SERVER_NEEDS
STATIC_REQUIREMENTS = "tokenizers>=0.21\nnumpy>=1.26\n" + _SERVER_NEEDS  # a table lookup: no onnxruntime
OPENVINO_REQUIREMENTS = ("openvino>=2025.3\ntokenizers>=0.21\nnumpy>=1.26\n" + _SERVER_NEEDS
                         )  # the openvino extra's floor
STATIC_TABLE = "piece_logits.npy"
_LICENCES = {"mahanews": "L3Cube-MahaNews, CC BY-NC-SA 4.0 (non-commercial use)"}


def export(model_dir: Path, out: Path, *, backend: str | None = None, corpus: Sequence[str] | None = None,
           corpus_names: Sequence[str] = (), splits=None, max_length: int | None = None,
           calibration_texts: Sequence[str] | None = None, trust_remote_code: bool = False) -> dict:
    """Write the deployable folder `out` for classifier `model_dir`; returns its manifest (export.json).

    `backend` defaults to `static` for a static-embedding student (the only one it has: an ONNX graph of
    a lookup and a mean would only add onnxruntime to the folder) and `onnx-int8-fused` for the rest.
    With `corpus`, the vocabulary is trimmed to it first (not for a static student: its tokenizer was
    trimmed when its table was built). With `splits`, the exported model is scored on the test split
    through the runtime itself, and the figures go into the manifest and model card. `calibration_texts`
    (training texts, never dev or test) calibrate a calibrated backend's activation ranges (openvino-int8).
    `max_length` defaults to the length the model was trained with (its record), else the training default,
    so the folder scores as `evaluate` scored the model.
    `trust_remote_code` lets `model_dir` run the Python code it ships while it is exported (the exported
    folder runs without it).
    """
    from ..models.folder import ModelFolder
    from ..models.load import load_tokenizer
    from ..models.trim import TRIM_RECORD, texts_with_removed_pieces, trim

    model_dir, out = Path(model_dir), Path(out)
    if max_length is None:
        max_length = recorded_max_length(model_dir) or TrainConfig.max_length
    backend = export_backend(model_dir, backend, trimming=corpus is not None)
    if backend in CALIBRATED_BACKENDS and not calibration_texts:
        raise MahaError(f"--backend {backend} calibrates activation ranges on training texts: name its training "
                        "data (a training record, or --corpus)")
    static = backend == "static"
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent if out.parent.exists() else None) as work:
        source, trim_record = model_dir, None
        if corpus is not None:
            source = Path(work) / "trimmed"
            trim_record = trim(model_dir, corpus, source, corpus_names=corpus_names,
                               trust_remote_code=trust_remote_code)
        if not (source / "tokenizer.json").is_file():
            raise MahaError(f"{source / 'tokenizer.json'}: export needs a fast tokenizer (tokenizer.json)")
        tokenizer = load_tokenizer(str(source), trust_remote_code=trust_remote_code)  # the folder checked first
        labels = ModelFolder.of(source, trust_remote_code=trust_remote_code).labels
        info = ModelFolder.of(model_dir, trust_remote_code=trust_remote_code).records.get(TRAINING_RECORD, {})
        # padding recorded for every kind (model_source.exported_manifest checks it); a static table pads nothing
        manifest = {
            "labels": list(labels), "max_length": max_length, "pad_id": tokenizer.pad_token_id,
            "pad_token": tokenizer.pad_token, "backend": backend, "source": str(model_dir),
            "made_with": _training_record(info)
        }
        model_files = ([_static_table(source, Path(work), max_length, manifest, info)] if static else
                       _transformer_files(source, backend, manifest, max_length, calibration_texts,
                                          None if source == model_dir else Path(work) / "derived", trust_remote_code))
        if trim_record is not None:
            manifest["trim"] = trim_record
        with staged_dir(out, EXPORT_RECORD) as tmp:
            for file in model_files:  # the model file, and an IR's weights beside it under the same stem
                shutil.copyfile(file, tmp / Path(manifest["model_file"]).with_suffix(file.suffix).name)
            shutil.copyfile(source / "tokenizer.json", tmp / "tokenizer.json")
            shutil.copyfile(runtime.__file__, tmp / "runtime.py")
            shutil.copyfile(Path(__file__).with_name("serve.py"), tmp / "server.py")  # this folder's serve.py
            write_text(tmp / "requirements.txt", "\n".join(manifest["needs"]) + "\n")
            write_json(tmp / EXPORT_RECORD, manifest)  # the runtime reads it: must exist before scoring
            if splits is not None:
                manifest["test"] = score_exported(tmp, splits)
                if trim_record is not None:
                    manifest["test"]["texts_with_removed_pieces"] = texts_with_removed_pieces(
                        load_tokenizer(str(model_dir), trust_remote_code=trust_remote_code), tokenizer,
                        splits.test.texts)
            if trim_record is not None:
                shutil.copyfile(source / TRIM_RECORD, tmp / TRIM_RECORD)
            manifest["disk_bytes"] = sum(p.stat().st_size for p in tmp.iterdir())
            write_json(tmp / EXPORT_RECORD, manifest)
            write_text(tmp / "README.md", model_card(manifest))
    return manifest


def export_backend(model_dir: Path, backend: str | None, *, trimming: bool = False) -> str:
    """The backend `model_dir` exports with (`backend`, or the default for its kind of model), refusing in one
    line a backend or a trim that does not fit it; the CLI asks before it reads a corpus."""
    from ..core.hardware import unsupported_reason
    from ..infer.numpy_engine import is_static

    static = is_static(model_dir)
    backend = backend or ("static" if static else TRANSFORMER_BACKENDS[0])
    if backend not in EXPORT_BACKENDS:
        raise MahaError(f"unknown export backend {backend!r}: choose one of {', '.join(EXPORT_BACKENDS)}")
    if static and backend != "static":
        raise MahaError(f"{model_dir}: a static-embedding student exports as its table (--backend static, its "
                        f"default); {backend} does not apply")
    if not static and backend == "static":
        raise MahaError(f"{model_dir}: --backend static is for static-embedding students; choose one of "
                        f"{', '.join(TRANSFORMER_BACKENDS)}")
    if (why := unsupported_reason(backend)) is not None:
        raise MahaError(f"--backend {backend}: {why}")
    if static and trimming:
        raise MahaError(f"{model_dir}: a static-embedding student's tokenizer was trimmed when its table was built; "
                        "export it without --trim-vocab")
    return backend


def _transformer_files(source: Path, backend: str, manifest: dict, max_length: int,
                       calibration_texts: Sequence[str] | None, cache_dir: Path | None,
                       trust_remote_code: bool) -> list[Path]:
    """The files `backend` serves `source` from (an ONNX graph; or OpenVINO IR, .xml then .bin); their facts go
    into `manifest`. Built once into the derived-file cache (the very files the benchmark backend times), or
    into `cache_dir`: a trimmed copy made for this export is temporary, and so are its files."""
    from ..infer.build import SEVEN_BIT_SUFFIX, served_files

    files = served_files(source, backend, max_length=max_length, cache_dir=cache_dir,
                         calibration_texts=calibration_texts, trust_remote_code=trust_remote_code)
    from ..infer.openvino_engine import inference_precision

    openvino = SPECS[backend].engine == "openvino"
    ir = files[0].suffix == ".xml"  # OpenVINO IR (int8); openvino / openvino-bf16 compile the ONNX graph itself
    manifest.update(kind="transformer", engine=OPENVINO_ENGINE if openvino else "onnxruntime",
                    model_file="model.xml" if ir else "model.onnx",
                    needs=(OPENVINO_REQUIREMENTS if openvino else REQUIREMENTS).split())
    if openvino:
        manifest["inference_precision"] = inference_precision(backend)
    if ir:
        manifest["weights_file"] = "model.bin"
    if SPECS[backend].file != "onnx":  # a 7-bit file runs anywhere; an 8-bit one can saturate on a CPU without VNNI
        stem = files[0].parent.name if openvino else files[0].stem  # IR: its folder's name says it
        manifest["int8_weight_bits"] = 7 if stem.endswith(SEVEN_BIT_SUFFIX) else 8
    return files


def _static_table(source: Path, work: Path, max_length: int, manifest: dict, info: dict) -> Path:
    """The static student's table with the head folded in, exactly as `static.StaticBackend` folds it (the
    backend builds it), saved in `work`; the bias, special ids and counts go into `manifest`."""
    import numpy as np

    from ..infer.numpy_engine import StaticBackend

    table = StaticBackend(source, max_length).table
    path = work / STATIC_TABLE
    np.save(path, table.piece_logits)
    built = info.get("static", {})
    counts = {
        "pieces": len(table.piece_logits), "counted_pieces": int(table.counted.sum()), "labels": len(table.bias),
        **{k: built[k]
           for k in ("pieces_before", "dim", "teacher_hidden") if k in built}
    }
    manifest.update(kind=STATIC_KIND, model_file=STATIC_TABLE, bias=table.bias.tolist(), special_ids=table.special_ids,
                    needs=STATIC_REQUIREMENTS.split(), static=counts)
    return path


def _training_record(info: dict) -> dict:
    """The facts of training.json worth a model card: what it was made from and on which data."""
    keep = ("base_model", "teacher", "student")
    made = {k: info[k] for k in keep if k in info}
    if "dataset" in info:
        made["dataset"] = info["dataset"].get("dataset")
    return made


def score_exported(folder: Path, splits) -> dict:
    """Accuracy and macro-F1 of the exported folder on the test split, run through its own runtime."""
    from ..core.metrics import accuracy, labels_present, macro_f1
    from ..infer.runtime import Classifier

    clf = Classifier(folder)
    index = {lab: i for i, lab in enumerate(clf.labels)}
    order = [index[lab] for lab in splits.labels]  # model label ids may be ordered unlike the dataset
    start = time.perf_counter()
    pred = clf.logits(splits.test.texts, batch_size=32).argmax(-1)
    seconds = time.perf_counter() - start
    truth = [order[y] for y in splits.test.labels]
    # macro-F1 over the classes the test split holds or the folder predicts, as exports have always been scored
    # (model cards, optimize's reports); `evaluate` averages over the dataset's every class instead
    return {
        "dataset": splits.name, "rows": len(truth), "accuracy": accuracy(truth, pred),
        "macro_f1": macro_f1(truth, pred, labels_present(truth, pred)), "texts_per_s_batch32": len(truth) / seconds
    }


def _what_it_is(manifest: dict) -> str:
    """The model card's first sentence: which kind of model the folder runs, and from where."""
    source = f"exported by mahacompress from `{manifest['source']}`"
    if manifest.get("kind") != STATIC_KIND:
        if manifest.get("engine") != OPENVINO_ENGINE:
            return f"An {manifest['backend']} ONNX model {source}."
        if manifest.get("weights_file"):
            return f"An {manifest['backend']} OpenVINO IR model {source}."
        return (f"An {manifest['backend']} model {source}: an fp32 ONNX graph that OpenVINO compiles with "
                f"{manifest['inference_precision']} inference precision (a CPU without native bf16 runs it in f32).")
    teacher = manifest.get("made_with", {}).get("teacher")
    return (f"A static-embedding student {source}" + (f", distilled from the teacher `{teacher}`" if teacher else "") +
            ": a table lookup and a mean, no attention and no layers. Its linear head is folded into the table, "
            f"so `{manifest['model_file']}` holds each piece's logits and a text's logits are the mean of its "
            "pieces' rows plus the bias (numpy and tokenizers only, no onnxruntime).")


def model_card(manifest: dict) -> str:
    """README.md of an exported folder: what it is, how it was made, how well it does, how to run it."""
    made = manifest.get("made_with", {})
    dataset = made.get("dataset") or (manifest.get("test") or {}).get("dataset") or "unknown"
    licence = next((v for k, v in _LICENCES.items() if str(dataset).startswith(k)), "see the dataset's source")
    lines = [
        f"# Marathi text classifier ({len(manifest['labels'])} labels)", "",
        _what_it_is(manifest), "", "## How it was made", ""
    ]
    lines += [f"- {k.replace('_', ' ')}: `{v}`" for k, v in made.items()] or ["- no training record found"]
    if "static" in manifest:
        t = manifest["static"]
        before = f" of the teacher's {t['pieces_before']}" if "pieces_before" in t else ""
        width = f", {t['dim']}-dimensional before the head was folded in" if "dim" in t else ""
        lines.append(f"- pieces kept: {t['pieces']}{before} (those of its training corpus; {t['counted_pieces']} "
                     f"count in the mean, the rest are special tokens){width}")
    if "trim" in manifest:
        t = manifest["trim"]
        lines.append(f"- vocabulary trimmed from {t['pieces_before']} to {t['pieces_kept']} pieces on "
                     f"{t['corpus_texts']} corpus texts ({', '.join(t['corpus']) or 'training texts'})")
    if manifest.get("int8_weight_bits") == 8:
        lines.append("- int8 weights use 8 bits (built on a CPU with VNNI); on an x86 CPU without VNNI the U8S8 int8 "
                     "kernels can saturate: re-export there, which builds 7-bit weights")
    elif manifest.get("int8_weight_bits") == 7:
        lines.append(
            "- int8 weights use 7 bits (built on a CPU without VNNI, against U8S8 saturation); they run on any CPU")
    lines += ["", "## Data and licence", "", f"- data: {dataset}; licence: {licence}", "", "## Measured", ""]
    test = manifest.get("test")
    if test:
        lines.append(
            f"- test split ({test['rows']} texts): accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}")
        lines.append(f"- {test['texts_per_s_batch32']:.1f} texts/s at batch 32 on the exporting machine")
        if "texts_with_removed_pieces" in test:
            lines.append(f"- test texts that needed a removed piece: {test['texts_with_removed_pieces']}")
    else:
        lines.append("- not scored at export (run `mahacompress export --dataset NAME` to score it)")
    lines.append(f"- folder size: {manifest['disk_bytes'] / 2**20:.1f} MiB")
    runtime_needs = len(manifest["needs"]) - len(_SERVER_NEEDS.split())
    lines += [
        "", "## How to run it", "", "Needs only: " + ", ".join(manifest["needs"]) + " (requirements.txt; "
        f"the first {runtime_needs} are enough for runtime.py).", "", "```python",
        "from runtime import Classifier  # runtime.py in this folder", "clf = Classifier('.')",
        "print(clf.predict(['आज पुण्यात पाऊस पडला']))", "```", "",
        "Or serve it over HTTP from this folder: `python server.py --port 8000` (POST /predict, GET /health, "
        "/info, /metrics; `python server.py --help` for the limits and `--api-key`).", "",
        "Labels: " + ", ".join(manifest["labels"]), ""
    ]
    return "\n".join(lines)
