"""Model files: safetensors + JSON metadata, verified on load, never unpickled."""

import json
import struct

import pytest
import torch

from inspector import MODEL_FORMAT_VERSION
from inspector.method.efficientad import EfficientAD
from inspector.errors import ModelFileError
from inspector.model_file import METADATA_KEY, load_model, load_tensors, save_model, save_tensors


@pytest.fixture
def model_path(tmp_path):
    torch.manual_seed(0)
    model = EfficientAD("s")
    model.set_map_quantiles({"q_st_start": torch.tensor(0.1), "q_st_end": torch.tensor(0.4), "q_ae_start": torch.tensor(0.2), "q_ae_end": torch.tensor(0.5)})
    path = tmp_path / "model.safetensors"
    save_model(path, model, {"architecture": "EfficientAD-S", "image_size": 256, "iterations": 7})
    return path, model


def read_header(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return data, n, json.loads(data[8 : 8 + n])


def test_round_trip_keeps_weights_statistics_and_metadata(model_path):
    path, model = model_path
    loaded, meta = load_model(path)
    assert meta["iterations"] == 7 and meta["size"] == "s" and meta["format_version"] == MODEL_FORMAT_VERSION
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert loaded.q_st_end.item() == pytest.approx(0.4)


def test_file_is_plain_safetensors_with_json_metadata(model_path):
    path, _ = model_path
    _, _, header = read_header(path)
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    assert meta["kind"] == "efficientad" and len(meta["tensor_sha256"]) == 64
    assert "teacher.conv1.weight" in header and "q_ae_end" in header


def test_tampered_tensor_is_refused(model_path):
    path, _ = model_path
    data, n, header = read_header(path)
    start, _ = header["student.conv4.bias"]["data_offsets"]
    pos = 8 + n + start
    tampered = bytearray(data)
    tampered[pos] ^= 0xFF
    path.write_bytes(bytes(tampered))
    with pytest.raises(ModelFileError, match="tampered"):
        load_model(path)


def test_truncated_file_is_refused(model_path):
    path, _ = model_path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_model(path)


def test_other_format_version_is_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    save_tensors(path, {"x": torch.zeros(2)}, {"kind": "efficientad", "format_version": MODEL_FORMAT_VERSION + 1})
    with pytest.raises(ModelFileError, match="format 2 is not supported"):
        load_tensors(path, "efficientad")


def test_wrong_kind_and_missing_file_are_refused(tmp_path):
    path = tmp_path / "teacher.safetensors"
    save_tensors(path, {"x": torch.zeros(2)}, {"kind": "teacher"})
    with pytest.raises(ModelFileError, match=r"expected a model file \(efficientad or instant\), this is a .teacher. file"):
        load_model(path)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "missing.safetensors")


def test_tensors_that_do_not_fit_are_refused(tmp_path):
    path = tmp_path / "odd.safetensors"
    save_tensors(path, {"teacher.conv1.weight": torch.zeros(1)}, {"kind": "efficientad", "size": "s"})
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(path)


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(TypeError):
        save_tensors(path, {"x": torch.zeros(2)}, {"kind": "efficientad", "not_json": object()})
    assert list(tmp_path.iterdir()) == []
