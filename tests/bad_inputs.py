"""A corpus of bad (and a few unusual but fine) inputs, run against every command.

Shared by tests/test_bad_inputs.py (asserts) and benchmarks/reliability.py (writes
reports/reliability.md). Each case runs in its own copy of a small workspace: a tiny model folder,
a folder of CSVs named like a new user's task (`x_Train.csv`, `x_Val.csv`, `x_Test.csv` with columns
`marathi_sentence,label`) and a tiny preset. Placeholders in arguments: {M} model folder, {D} data
folder, {O} output folder, {R} the case's root, {P} preset.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from typer.testing import CliRunner

COLS = ["--text-col", "marathi_sentence", "--label-col", "label"]
LABELS = ("Auto", "Sports", "Tech")
_KEYWORDS = {"Auto": "गाडी", "Sports": "क्रिकेट", "Tech": "मोबाईल"}
_FILLER = "आज उद्या शहर राज्य देश लोक नवीन मोठा बातमी सरकार".split()
HUB_ID = "someone/no-such-model"


@dataclass(frozen=True)
class Case:
    """One input tried: what the user typed, what is wrong with it, and what the answer must name."""

    id: str
    family: str  # model | data | option | output | markup | fine
    what: str  # the bad input, in words
    args: tuple[str, ...]
    expect: str  # a substring of the one error line (or of the output, for a fine input)
    setup: Callable[[Path], None] | None = None
    deny: str | None = None  # a path (template) reported unreadable/unwritable (simulated: tests may run as root)
    ok: bool = False  # a correct input that must succeed


# ---------------------------------------------------------------------------- workspace


def _rows(n: int, rng: random.Random) -> list[str]:
    out = []
    for i in range(n):
        label = LABELS[i % 3]
        out.append(" ".join(rng.sample(_FILLER, 4) + [_KEYWORDS[label]] + rng.sample(_FILLER, 3)) + f" {i}," + label)
    return out


def make_template(root: Path) -> Path:
    """Build the workspace every case copies (a tiny model, a data folder, a preset)."""
    from mahacompress.models.load import save_classifier, tiny_bert, tiny_tokenizer

    rng = random.Random(0)
    data = root / "data"
    data.mkdir(parents=True)
    head = "marathi_sentence,label"
    for name, n in (("x_Train.csv", 48), ("x_Val.csv", 12), ("x_Test.csv", 12)):
        (data / name).write_text("\n".join([head, *_rows(n, rng)]) + "\n", encoding="utf-8")
    texts = [line.rsplit(",", 1)[0] for line in (data / "x_Train.csv").read_text(encoding="utf-8").splitlines()[1:]]
    tok = tiny_tokenizer(texts, vocab_size=200)
    model = tiny_bert(3, vocab_size=len(tok), id2label=dict(enumerate(LABELS)),
                      label2id={n: i
                                for i, n in enumerate(LABELS)})
    save_classifier(model, tok, root / "model", {})
    (root / "tiny.yaml").write_text(
        "rows: [baseline, kd]\nfinetune: {epochs: 1, batch_size: 16, max_length: 32}\n"
        "distill: {epochs: 1, batch_size: 16, max_length: 32}\nstudent_layers: 1\n", encoding="utf-8")
    return root


def _write(rel: str, content: str | bytes) -> Callable[[Path], None]:

    def setup(root: Path) -> None:
        path = root / rel
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")

    return setup


def _truncate(rel: str) -> Callable[[Path], None]:

    def setup(root: Path) -> None:
        path = root / rel
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])

    return setup


def _remove(*rels: str) -> Callable[[Path], None]:

    def setup(root: Path) -> None:
        for rel in rels:
            (root / rel).unlink()

    return setup


def _exported(root: Path) -> None:
    """A folder that looks exported (only its manifest: the options are refused before it is read)."""
    (root / "exported").mkdir()
    (root / "exported" / "export.json").write_text("{}", encoding="utf-8")


def _train_lines(root: Path) -> list[str]:
    return (root / "data" / "x_Train.csv").read_text(encoding="utf-8").splitlines()


def _edit_train(fn: Callable[[list[str]], list[str]], encoding: str = "utf-8") -> Callable[[Path], None]:

    def setup(root: Path) -> None:
        lines = fn(_train_lines(root))
        (root / "data" / "x_Train.csv").write_bytes(("\n".join(lines) + "\n").encode(encoding))

    return setup


# ---------------------------------------------------------------------------- the corpus

MODEL_COMMANDS: dict[str, tuple[str, ...]] = {
    "finetune": ("finetune", "--model", "{M}", "--out", "{O}", "--dataset", "{D}", *COLS),
    "distill": ("distill", "--teacher", "{M}", "--student", "layers:1", "--out", "{O}", "--dataset", "{D}",
                *COLS), "prune": ("prune", "--model", "{M}", "--out", "{O}", "--sparsity", "0.5", "--dataset", "{D}",
                                  *COLS), "evaluate": ("evaluate", "--model", "{M}", "--dataset", "{D}", *COLS),
    "predict": ("predict", "--model", "{M}", "एक बातमी"), "compare": ("compare", "--model", "{M}", "--out",
                                                                      "{O}/metrics.json", "--dataset", "{D}", *COLS),
    "reproduce": ("reproduce", "--teacher", "{M}", "--preset", "{P}", "--out", "{O}", "--dataset", "{D}",
                  *COLS), "trim": ("trim", "{M}", "--out", "{O}", "--corpus", "{D}/x_Train.csv", "--text-col",
                                   "marathi_sentence"), "export": ("export", "{M}", "--out", "{O}"),
    "optimize": ("optimize", "--teacher", "{M}", "--out", "{O}", "--dataset", "{D}", *COLS)
}
DATA_COMMANDS: dict[str, tuple[str, ...]] = {
    "data inspect": ("data", "inspect", "--dataset", "{D}", *COLS),
    "baseline tfidf": ("baseline", "tfidf", "--dataset", "{D}", *COLS), "finetune": MODEL_COMMANDS["finetune"],
    "evaluate": MODEL_COMMANDS["evaluate"]
}

_MODEL_DEFECTS = [("garbage-weights", "model.safetensors holds garbage",
                   _write("model/model.safetensors", b"\x00garbage" * 8), "{M}", "corrupt weights",
                   ),
                  ("truncated-weights", "model.safetensors cut in half", _truncate("model/model.safetensors"), "{M}",
                   "truncated weights",
                   ),
                  ("config-not-json", "config.json is not valid JSON",
                   _write("model/config.json", '{"hidden_size": 64,'), "{M}", "not valid JSON",
                   ),
                  ("no-tokenizer", "the folder has no tokenizer files",
                   _remove("model/tokenizer.json", "model/tokenizer_config.json"), "{M}", "no tokenizer files",
                   ),
                  ("mistyped-folder", "a mistyped local folder name", None, "{R}/modle", "not a Hugging Face hub id"),
                  ("hub-unreachable", "a hub id with no network", None, HUB_ID, "cannot be reached"),
                  ("missing-relative-path", "a two-part relative path that does not exist (shaped like a hub id)", None,
                   "no-such-run/model", "no-such-run/model: no such model folder here",
                   ), ]


def _model_cases() -> list[Case]:
    cases = []
    for defect, what, setup, model, expect in _MODEL_DEFECTS:
        for cmd, args in MODEL_COMMANDS.items():
            argv = tuple(a.replace("{M}", model) for a in args)
            cases.append(Case(f"{defect}/{cmd}", "model", what, argv, expect, setup))
    for cmd in ("evaluate", "finetune"):
        cases.append(
            Case(f"unreadable-weights/{cmd}", "model", "a weights file the user may not read", MODEL_COMMANDS[cmd],
                 "permission denied", deny="{M}/model.safetensors"))
    return cases


_DATA_DEFECTS = [
    ("utf16", "training CSV saved as UTF-16 (with BOM)", _edit_train(lambda ls: ls, "utf-16"), "UTF-16"),
    ("utf16-no-bom", "training CSV saved as UTF-16LE without BOM", _edit_train(lambda ls: ls, "utf-16-le"), "NUL bytes",
     ),
    ("unbalanced-quote", "an unbalanced quote merges records",
     _edit_train(lambda ls: [ls[0], '"' + ls[1], *ls[2:6], ls[6].replace(" ", ' "', 1), *ls[7:]]), "row 2",
     ),
    ("unquoted-comma", "a text with an unquoted comma (a label that is text)",
     _edit_train(lambda ls: [ls[0], "आज बातमी, उद्या शहर राज्य देश लोक,Auto", *ls[1:]]), "looks like text",
     ),
    ("single-class", "every training row has the same label",
     _edit_train(lambda ls: [ls[0]] + [line.rsplit(",", 1)[0] + ",Auto" for line in ls[1:]]), "at least two classes",
     ),
    ("wrong-columns", "the CSV has other column names", _edit_train(lambda ls: ["sentence,topic", *ls[1:]]),
     "no column 'marathi_sentence'",
     ),
    ("not-utf8", "a byte that is not UTF-8",
     _write("data/x_Train.csv", "marathi_sentence,label\nअ,Auto\n".encode() + b"\xff\xfe,Tech\n"), "row 3",
     ), ("empty-file", "an empty training CSV", _write("data/x_Train.csv", ""), "empty file"),
    ("unseen-test-label", "a test label absent from training",
     _write("data/x_Test.csv", "marathi_sentence,label\nआज गाडी,Auto\nउद्या,Cars\n"), "label 'Cars'",
     )
]


def _data_cases() -> list[Case]:
    cases = []
    for defect, what, setup, expect in _DATA_DEFECTS:
        for cmd, args in DATA_COMMANDS.items():
            cases.append(Case(f"{defect}/{cmd}", "data", what, args, expect, setup))
    cases += [
        Case("missing-data-folder/data inspect", "data", "a data folder that does not exist",
             ("data", "inspect", "--dataset", "{R}/nodata"), "no such folder of CSVs"),
        Case("data-is-a-file/data inspect", "data", "a CSV file given where a folder is expected",
             ("data", "inspect", "--dataset", "{D}/x_Train.csv"), "a file, not a folder of CSVs"),
        Case("predict-csv-missing/predict", "data", "predict --csv with a missing file",
             ("predict", "--model", "{M}", "--csv", "{R}/none.csv"), "not found"),
        Case("predict-csv-folder/predict", "data", "predict --csv given a folder",
             ("predict", "--model", "{M}", "--csv", "{D}"), "found a folder")
    ]
    return cases


def _option_cases() -> list[Case]:
    ft, dist, pr = MODEL_COMMANDS["finetune"], MODEL_COMMANDS["distill"], MODEL_COMMANDS["prune"]
    ev = MODEL_COMMANDS["evaluate"]
    table = [
        ("batch-size-0", "--batch-size 0", ft + ("--batch-size", "0"), "--batch-size 0"),
        ("batch-size-text", "--batch-size abc", ft + ("--batch-size", "abc"), "--batch-size"),
        ("max-length-0", "--max-length 0", ft + ("--max-length", "0"), "--max-length 0"),
        ("max-length-too-long", "--max-length beyond the position embeddings", ft + ("--max-length", "4096"),
         "position embeddings",
         ), ("epochs-0", "--epochs 0", ft + ("--epochs", "0"), "--epochs 0"),
        ("lr-negative", "--lr -1", ft + ("--lr", "-1"), "--lr -1"),
        ("mixed-precision-typo", "--mixed-precision bf61", ft + ("--mixed-precision", "bf61"), "bf61"),
        ("alpha-above-1", "--alpha 1.5", dist + ("--alpha", "1.5"), "--alpha 1.5"),
        ("alpha-negative", "--alpha -0.1", dist + ("--alpha", "-0.1"), "--alpha -0.1"),
        ("temperature-0", "--temperature 0", dist + ("--temperature", "0"), "--temperature 0"),
        ("hidden-weight-negative", "--hidden-weight -1", dist + ("--hidden-weight", "-1"), "--hidden-weight"),
        ("layer-map-outside", "--layer-map naming a layer beyond the teacher's depth",
         dist + ("--hidden-weight", "1", "--layer-map", "20"), "outside the teacher's 2 layers",
         ),
        ("layer-map-length", "--layer-map with more layers than the student has",
         dist + ("--hidden-weight", "1", "--layer-map", "0,1"), "2 teacher layers for a student of 1",
         ),
        ("relation-heads-not-dividing", "--relation-heads that do not divide the model's width",
         dist + ("--attention-weight", "1", "--relation-heads", "5"), "--relation-heads 5 does not divide",
         ),
        ("prune-layer-map-outside", "prune --layer-map naming a layer beyond the teacher's depth",
         pr + ("--distill-from", "{M}", "--attention-weight", "1", "--relation-heads", "4", "--layer-map", "0,7"),
         "outside the teacher's 2 layers",
         ), ("augment-0", "--augment 0", dist + ("--augment", "0"), "--augment 0"),
        ("augment-negative", "--augment -1", dist + ("--augment", "-1"), "--augment -1"),
        ("augment-text", "--augment two", dist + ("--augment", "two"), "--augment"),
        ("cut-from-missing", "--cut-from naming no folder", dist + ("--cut-from", "{R}/no-such-student"),
         "not a folder"),
        ("cut-from-too-shallow", "--cut-from a 2-layer student for --student layers:3",
         tuple(a.replace("layers:1", "layers:3")
               for a in dist) + ("--cut-from", "{M}"), "has 2 layers; choose layers:1..2"),
        ("cut-from-static", "--cut-from with a static student",
         tuple(a.replace("layers:1", "static") for a in dist) + ("--cut-from", "{M}"), "--cut-from copies layers"),
        ("elastic-depths-too-deep", "--elastic-depths as deep as the student (layers:1)",
         dist + ("--elastic-depths", "1"), "a 1-layer student has no shallower cut"),
        ("elastic-depths-text", "--elastic-depths 1,x", dist + ("--elastic-depths", "1,x"),
         "--elastic-depths 1,x: expected whole numbers"),
        ("elastic-depths-static", "--elastic-depths with a static student",
         tuple(a.replace("layers:1", "static:32") for a in dist) + ("--elastic-depths", "1"), "trains a layer student"),
        ("student-spec", "--student layers:x", tuple(a.replace("layers:1", "layers:x") for a in dist), "--student"),
        ("sparsity-0", "--sparsity 0", tuple(a.replace("0.5", "0") for a in pr), "sparsity 0"),
        ("sparsity-above-1", "--sparsity 1.5", tuple(a.replace("0.5", "1.5") for a in pr), "sparsity 1.5"),
        ("block-size-7", "--block-size 7 (does not tile 64x64)", pr + ("--block-size", "7"), "--block-size 7"),
        ("binarizer-typo", "--binarizer top-k", pr + ("--binarizer", "top-k"), "binarizer"),
        ("split-typo", "evaluate --split valid", ev + ("--split", "valid"), "--split valid"),
        ("backend-typo", "evaluate --backend int4", ev + ("--backend", "int4"), "--backend int4"),
        ("eval-max-length-0", "evaluate --max-length 0", ev + ("--max-length", "0"), "--max-length 0"),
        ("unknown-command", "a command that does not exist", ("compress", "--model", "{M}"), "No such command"),
        ("missing-option", "finetune without --model", ("finetune", "--out", "{O}"), "Missing option"),
        ("preset-unknown", "--preset that is neither a file nor a shipped name",
         ("reproduce", "--teacher", "{M}", "--preset", "cpu-fast", "--out", "{O}"), "preset 'cpu-fast'",
         ),
        ("preset-bad-key", "a preset with an unknown key", ("reproduce", "--teacher", "{M}", "--preset", "{R}/bad.yaml",
                                                            "--out", "{O}"), "unknown key 'epochz'",
         ),
        ("preset-bad-alpha", "a preset with distill.kd_alpha 2",
         ("reproduce", "--teacher", "{M}", "--preset", "{R}/alpha.yaml", "--out", "{O}"), "distill.kd_alpha 2",
         ),
        ("preset-served-backend", "a preset whose served_backend no exported folder runs (torch's int8)",
         ("reproduce", "--teacher", "{M}", "--preset", "{R}/served.yaml", "--out", "{O}"), "served_backend 'int8'",
         ),
        ("report-no-results", "report on a folder without results.json", ("report", "--out", "{R}/model"),
         "no results.json",
         ),
        ("transfer-set-missing", "distill --transfer-set naming a missing file",
         dist + ("--transfer-set", "{R}/none.csv"), "none.csv",
         ),
        ("transfer-set-no-column", "distill --transfer-set CSV without the named column",
         dist + ("--transfer-set", "{D}/x_Test.csv", "--transfer-text-col", "text"), "no column 'text'",
         ),
        ("transfer-window-0", "distill --transfer-window 0", dist +
         ("--transfer-set", "{D}/x_Test.csv", "--transfer-text-col", "marathi_sentence", "--transfer-window", "0"),
         "window_words",
         ),
        ("transfer-set-empty-after-filter", "distill --transfer-set whose every text is a test text (all dropped)",
         dist + ("--transfer-set", "{D}/x_Test.csv", "--transfer-text-col", "marathi_sentence"),
         "no transfer piece is left after dropping overlap",
         ),
        ("corpus-missing", "trim --corpus naming a missing file", ("trim", "{M}", "--out", "{O}", "--corpus",
                                                                   "{R}/none.txt"), "none.txt",
         ),
        ("corpus-not-utf8", "trim --corpus that is not UTF-8", ("trim", "{M}", "--out", "{O}", "--corpus",
                                                                "{R}/latin1.txt"), "UTF-8",
         ),
        ("export-backend-typo", "export --backend onnx-int4", ("export", "{M}", "--out", "{O}", "--backend",
                                                               "onnx-int4"), "--backend onnx-int4",
         ), ("budget-negative", "optimize --budget -1", MODEL_COMMANDS["optimize"] + ("--budget", "-1"), "--budget -1"),
        ("metric-typo", "optimize --metric f1", MODEL_COMMANDS["optimize"] + ("--metric", "f1"), "--metric f1"),
        ("optimize-batch-0", "optimize --batch-size 0", MODEL_COMMANDS["optimize"] + ("--batch-size", "0"),
         "--batch-size 0",
         ),
        ("time-budget-text", "optimize --time-budget soon", MODEL_COMMANDS["optimize"] + ("--time-budget", "soon"),
         "--time-budget soon",
         ), ("serve-not-exported", "serve a folder that export did not write", ("serve", "{M}"), "export.json"),
        ("serve-port-0", "serve --port 0", ("serve", "{R}/exported", "--port", "0"), "--port 0")
    ]
    setups = {
        "preset-bad-key": _write("bad.yaml", "finetune: {epochz: 1}\n"), "preset-bad-alpha": _write(
            "alpha.yaml",
            "distill: {kd_alpha: 2}\n"), "preset-served-backend": _write("served.yaml", "served_backend: int8\n"),
        "corpus-not-utf8": _write("latin1.txt", "caf\xe9\n".encode("latin-1")), "serve-port-0": _exported
    }
    cmd_of = {"split-typo": "evaluate", "backend-typo": "evaluate", "eval-max-length-0": "evaluate"}
    return [
        Case(f"{cid}/{cmd_of.get(cid, args[0])}", "option", what, args, expect, setups.get(cid))
        for cid, what, args, expect in table
    ]


def _output_cases() -> list[Case]:
    file_out = _write("out", "I am a file\n")
    cases = [
        Case(f"out-is-file/{cmd}", "output", "--out names an existing file",
             tuple(a.replace("{O}", "{R}/out") for a in MODEL_COMMANDS[cmd]), "is an existing file", file_out)
        for cmd in ("finetune", "distill", "prune", "reproduce")
    ]
    cases += [
        Case("out-below-file/finetune", "output", "--out inside a path that is a file",
             tuple(a.replace("{O}", "{R}/out/sub") for a in MODEL_COMMANDS["finetune"]), "is a file", file_out),
        Case("out-is-folder/compare", "output", "compare --out names an existing folder",
             ("compare", "--model", "{M}", "--out", "{D}", "--dataset", "{D}", *COLS), "is an existing folder"),
        Case("out-is-file/models build-e5", "output", "build-e5 OUT is an existing file",
             ("models", "build-e5", "{R}/out"), "is an existing file", file_out),
        Case("out-is-file/report", "output", "report --out is an existing file", ("report", "--out", "{R}/out"),
             "is an existing file", file_out),
        Case("out-unwritable/finetune", "output", "--out in a folder the user cannot write", MODEL_COMMANDS["finetune"],
             "permission denied", deny="{R}"),
        Case("out-unwritable/reproduce", "output", "the grid's --out in a folder the user cannot write",
             MODEL_COMMANDS["reproduce"], "permission denied", deny="{R}")
    ]
    return cases + _destructive_out_cases()


def _user_folder(rel: str, previous: bool = False) -> Callable[[Path], None]:
    """A folder of the user's (or, `previous`, a finetune output) holding a file mahacompress did not write."""

    def setup(root: Path) -> None:
        if previous:
            shutil.copytree(root / "model", root / rel)
        (root / rel / "sub").mkdir(parents=True, exist_ok=True)
        (root / rel / "notes.txt").write_text("mine\n", encoding="utf-8")
        (root / rel / "sub" / "y.txt").write_text("mine too\n", encoding="utf-8")

    return setup


def _data_in_mine(root: Path) -> None:
    (root / "mine").mkdir()
    shutil.move(root / "data", root / "mine" / "data")


# what each folder-writing command records in its folder (the marker a replaceable folder must hold)
_WRITERS = {
    "finetune": "training.json", "distill": "training.json", "prune": "pruning.json", "trim": "trim.json",
    "export": "export.json", "reproduce": "results.json"
}


def _destructive_out_cases() -> list[Case]:
    """--out naming a folder whose replacement would delete the user's files or the command's inputs."""

    def at(cmd: str, out: str) -> tuple[str, ...]:
        return tuple(a.replace("{O}", out) for a in MODEL_COMMANDS[cmd])

    cases = [
        Case(f"out-holds-user-files/{cmd}", "output",
             "--out a folder holding the user's own files", at(cmd, "{R}/mine"), f"mine: holds files but no {marker}",
             _user_folder("mine")) for cmd, marker in _WRITERS.items()
    ]
    cases += [
        Case(f"out-is-the-model/{cmd}", "output", "--out the input model folder itself", at(cmd, "{M}"), "is the input")
        for cmd in _WRITERS if cmd != "reproduce"
    ]
    cases += [
        Case(f"out-holds-the-model/{cmd}", "output", "--out a parent of the input model", at(cmd, "{R}"),
             "holds the input") for cmd in _WRITERS if cmd != "reproduce"
    ]
    cases += [
        Case("out-holds-the-data/finetune", "output", "--out a parent of the data folder",
             tuple(a.replace("{D}", "{R}/mine/data")
                   for a in at("finetune", "{R}/mine")), "holds the input", _data_in_mine),
        Case("out-previous-with-user-file/finetune", "output", "--out a previous finetune output the user added to",
             at("finetune", "{R}/prev"), "holds notes.txt, which mahacompress did not write",
             _user_folder("prev", previous=True)),
        Case("out-holds-user-files/models build-e5", "output", "build-e5 OUT a folder holding the user's files",
             ("models", "build-e5", "{R}/mine"), "mine: holds files but no SOURCE.md", _user_folder("mine"))
    ]
    return cases


def _other_cases() -> list[Case]:
    return [
        Case("markup-in-name/finetune", "markup", "a model name holding rich markup and an emoji code",
             tuple(a.replace("{M}", "{R}/:smile: [bold]m") for a in MODEL_COMMANDS["finetune"]), ":smile: [bold]m"),
        Case("markup-in-label/data inspect", "markup", "a test label holding rich markup and an emoji code",
             DATA_COMMANDS["data inspect"], "[red]:fire:",
             _write("data/x_Test.csv", "marathi_sentence,label\nआज गाडी,[red]:fire:\n")),
        Case("validation-file/data inspect", "fine", "a folder with x_Train, x_Val and x_Test (columns named)",
             DATA_COMMANDS["data inspect"] + ("--json", ), "x_Val.csv", ok=True),
        Case(
            "quoted-line-breaks/data inspect", "fine", 'quoted texts holding line breaks and quotes ("")',
            DATA_COMMANDS["data inspect"] + ("--json", ), "x_Train.csv", ok=True, setup=_edit_train(lambda ls: [
                ls[0], '"आज बातमी\nती म्हणाली ""गाडी नवी"", शहर\nलोक",Auto', '"""क्रिकेट"" सामना\nउद्या",Sports', *ls[1:
                                                                                                                      ]
            ]))
    ]


CORPUS: list[Case] = _model_cases() + _data_cases() + _option_cases() + _output_cases() + _other_cases()

# ---------------------------------------------------------------------------- running a case


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    left_behind: list[str]  # paths created or changed under the case's root

    def one_line(self) -> bool:
        return len(self.stderr.strip().splitlines()) == 1 and "Traceback" not in self.stderr + self.stdout


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
        for p in root.rglob("*")
    }


def argv(case: Case, root: Path) -> list[str]:
    subs = {"{M}": root / "model", "{D}": root / "data", "{O}": root / "out", "{P}": root / "tiny.yaml", "{R}": root}
    out = []
    for a in case.args:
        for key, value in subs.items():
            a = a.replace(key, str(value))
        out.append(a)
    return out


def prepare(case: Case, template: Path, root: Path) -> Path:
    """Copy the template to `root` and apply the case's defect."""
    shutil.copytree(template, root)
    if case.setup:
        case.setup(root)
    return root


@contextmanager
def simulated(case: Case, root: Path) -> Iterator[None]:
    """No network for hub ids, and `deny` paths reported unreadable/unwritable (root ignores modes)."""
    import mahacompress.core.model_source as model_source
    import mahacompress.core.validate as validate

    with ExitStack() as stack:
        stack.enter_context(
            mock.patch.object(model_source.socket, "create_connection",
                              side_effect=OSError(101, "Network is unreachable")))
        if case.deny:
            denied = str(case.deny).replace("{M}", str(root / "model")).replace("{R}", str(root))
            real = os.access
            stack.enter_context(
                mock.patch.object(validate.os, "access", lambda p, mode: str(p) != denied and real(p, mode)))
        yield


def run_in_process(case: Case, root: Path) -> Outcome:
    """Run one case through the CLI runner and report what it answered and left behind."""
    from mahacompress.cli.app import app

    before = _snapshot(root)
    with simulated(case, root):
        result = CliRunner().invoke(app, argv(case, root), catch_exceptions=True)
    after = _snapshot(root)
    left = sorted(p for p in after if before.get(p) != after[p])
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        stderr += "".join(traceback.format_exception(result.exception))
    return Outcome(result.exit_code, result.stdout, stderr, left)
