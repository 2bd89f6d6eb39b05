"""nsynth export-model: ONNX with the front end inside, its outputs against PyTorch's on real
notes for every preset (onnxruntime), the record in the run folder, and the documented
onnxruntime-only example of docs/report.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from nsynth_prep.readers.wav_any import read_wav_any
from nsynth_train.config import TrainConfig
from nsynth_train.export_onnx import ConvLogMel, export_model, write_onnx
from nsynth_train.frontend import LogMel
from nsynth_train.models import build_model
from nsynth_train.predict import Predictor, fit_audio
from nsynth_train.tasks import get_task
from nsynth_train.vocabulary import PRESETS

ort = pytest.importorskip("onnxruntime", reason="pip install -e '.[test]' (onnxruntime is in the test extra)")
pytest.importorskip("onnx", reason="pip install -e '.[test]' (onnx is in the test extra)")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "report.md"
# Probabilities of ONNX Runtime and PyTorch agree to this (float32 on the CPU; measured at most
# 6e-8 over every preset and task here, mel-cnn's log-mel included).
ATOL = 1e-6


def real_notes(corpus: Path, count: int = 6) -> np.ndarray:
    """(count, 64000) float32: the first notes of the session corpus's test split, as predict reads them."""
    wavs = sorted((corpus / "nsynth-test" / "audio").glob("*.wav"))[:count]
    return np.stack([fit_audio(*read_wav_any(w))[0] for w in wavs])


def test_the_stft_as_a_convolution_matches_torch_stft(corpus: Path) -> None:
    x = torch.from_numpy(real_notes(corpus, 3)[:, :25_600])
    want, got = LogMel()(x), ConvLogMel()(x)
    assert got.shape == want.shape == (3, 64, 51)
    # Log-mel (natural log of power; measured: at most 7.8e-5, mean 1.5e-6): bands far below
    # the note's peak carry the two STFTs' float32 rounding.
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=5e-4)
    assert float((got - want).abs().mean()) < 1e-5


@pytest.mark.parametrize("task", ["family", "both"])
@pytest.mark.parametrize("model", list(PRESETS))
def test_onnx_matches_pytorch_on_real_notes(corpus: Path, tmp_path: Path, model: str, task: str) -> None:
    torch.manual_seed(0)
    t = get_task(task)
    net = build_model(model, t.outputs)
    for m in net.modules():  # batch norm away from its initial identity, as after training
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    predictor = Predictor(net.eval(), TrainConfig(model=model, task=task), t, torch.device("cpu"))
    write_onnx(predictor, tmp_path / "m.onnx")
    audio = real_notes(corpus)
    want = predictor.probabilities(audio)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = session.run(["probabilities"], {"audio": audio})[0]
    assert got.shape == want.shape == (len(audio), t.outputs)
    np.testing.assert_allclose(got, want, atol=ATOL)
    assert (got.argmax(1) == want.argmax(1)).all()
    one = session.run(["probabilities"], {"audio": audio[:1]})[0]  # any batch size
    np.testing.assert_allclose(one, want[:1], atol=ATOL)


def test_export_model_records_the_export_and_refuses_to_overwrite(finished_run: Path, corpus: Path, tmp_path: Path,
                                                                  cli: Callable[..., object]) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    result = cli("export-model", run, tmp_path / "cnn.onnx")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "opset 18" in result.stdout  # type: ignore[attr-defined]
    record = json.loads((run / "export.json").read_text())["exports"]
    assert len(record) == 1 and record[0]["opset"] == 18 and record[0]["model"] == "cnn"
    assert record[0]["heads"][0]["name"] == "family" and len(record[0]["heads"][0]["classes"]) == 10
    again = cli("export-model", run, tmp_path / "cnn.onnx")
    assert again.exit_code == 1 and "pass --overwrite" in again.stderr  # type: ignore[attr-defined]
    assert cli("export-model", run, tmp_path / "cnn.onnx", "--overwrite").exit_code == 0  # type: ignore[attr-defined]
    assert len(json.loads((run / "export.json").read_text())["exports"]) == 2
    session = ort.InferenceSession(str(tmp_path / "cnn.onnx"))
    assert json.loads(session.get_modelmeta().custom_metadata_map["nsynth.heads"]) == record[0]["heads"]
    audio = real_notes(corpus)  # the trained run, exported: the same probabilities as predict's
    np.testing.assert_allclose(session.run(None, {"audio": audio})[0],
                               Predictor.load(run, "cpu").probabilities(audio), atol=ATOL)


def test_the_documented_onnxruntime_example_classifies_a_wav(finished_run: Path, corpus: Path,
                                                             tmp_path: Path) -> None:
    export_model(finished_run, tmp_path / "model.onnx", record=False)
    block = re.search(r"<!-- onnx-example -->\n```python\n(.*?)```", DOCS.read_text(), re.S)
    assert block, "docs/report.md lost its onnxruntime example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 20 and "nsynth" not in code.replace('"nsynth.heads"', "")
    (tmp_path / "classify.py").write_text(code)
    wav = sorted((corpus / "nsynth-test" / "audio").glob("*.wav"))[0]
    out = subprocess.run([sys.executable, "classify.py", str(wav)], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    want = Predictor.load(finished_run, "cpu")
    probs = want.probabilities(fit_audio(*read_wav_any(wav))[0][None])[0]
    top = want.top(probs, 1)["family"][0]
    assert out.startswith(f"family {top['class']} {100 * top['probability']:.1f}%"), out
