"""``nsynth export-model``: a trained run as one ONNX file that takes raw 16 kHz audio.

The exported graph holds everything :class:`~nsynth_train.predict.Predictor` does after the
audio is read: 16-bit quantisation (the models were trained on NSynth's int16 WAVs), the
model's feature (``pooled``: 25-sample means; ``framed``: 100 frames of 160 samples;
``trimmed``: the first 51,200 samples), the network, and a softmax per head. ``torch.stft``
does not export to ONNX, so for the mel models the log-mel front end is rebuilt from plain ops
(:class:`ConvLogMel`): the STFT as a 1-D convolution with fixed cosine and sine kernels, the mel
filterbank as a matrix product, then the log. A user needs only onnxruntime and numpy.

Input ``audio``: (batch, 64000) float32 mono samples in [-1, 1] at 16 kHz (4 s; only the
samples each feature uses are read). Output ``probabilities``: (batch, outputs) float32, a
softmax per head (the heads and class names are in the model's metadata, ``nsynth.heads``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nsynth_prep.errors import ConfigError, RunError
from nsynth_prep.features import Framed, Pooled, Trimmed, feature_spec
from nsynth_prep.labels import NOTE_SAMPLES
from nsynth_train import frontend
from nsynth_train.predict import Predictor
from nsynth_train.run_dir import atomic, write_json
from nsynth_train.tasks import Task

OPSET = 18  # ONNX opset written: onnxruntime >= 1.14 runs it
EXPORT_RECORD = "export.json"  # in the run folder: one entry per export
log = logging.getLogger(__name__)


class ConvLogMel(nn.Module):
    """:class:`~nsynth_train.frontend.LogMel` from exportable ops: (B, L) -> (B, n_mels, 1 + L // hop).

    Reflect padding of ``n_fft // 2`` each side (``center=True``), then a stride-``hop``
    convolution with 2 x (n_fft // 2 + 1) fixed kernels, ``window * cos`` and ``-window * sin``
    of each bin's frequency (the real and imaginary parts of the DFT), power, mel matrix, log.
    """

    def __init__(self, n_fft: int = frontend.N_FFT, hop: int = frontend.HOP, n_mels: int = frontend.N_MELS) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        n = np.arange(n_fft)
        k = np.arange(n_fft // 2 + 1)[:, None]
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann, as torch.hann_window
        angle = 2 * np.pi * k * n[None] / n_fft  # (F, n_fft), in float64 before the cast
        kernels = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])[:, None]  # (2F, 1, n_fft)
        self.dft: torch.Tensor
        self.fb: torch.Tensor
        self.register_buffer("dft", torch.from_numpy(kernels.astype(np.float32)), persistent=False)
        self.register_buffer("fb", torch.from_numpy(frontend.mel_filterbank(n_fft=n_fft, n_mels=n_mels)),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.n_fft // 2
        padded = F.pad(x.float().unsqueeze(1), (pad, pad), mode="reflect")  # (B, 1, L + n_fft)
        spec = F.conv1d(padded, self.dft, stride=self.hop)  # (B, 2F, T)
        bins = self.dft.shape[0] // 2
        power = spec[:, :bins].square() + spec[:, bins:].square()
        return torch.log(torch.matmul(self.fb, power) + frontend.LOG_FLOOR)


class FeatureOf(nn.Module):
    """(B, 64000) float audio -> the model's input, as :meth:`Predictor.probabilities` computes it
    (int16 quantisation, then the feature in float)."""

    def __init__(self, feature: str) -> None:
        super().__init__()
        self.spec = feature_spec(feature)
        if isinstance(self.spec, Pooled) and self.spec.kernel != self.spec.stride:
            raise ConfigError(f"pooled with kernel {self.spec.kernel} != stride {self.spec.stride} does not export")

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        pcm = torch.clamp(torch.round(audio * 32768.0), -32768.0, 32767.0) / 32768.0  # exact in float32
        spec = self.spec
        if isinstance(spec, Pooled):
            width = spec.row_shape[0]
            return pcm[:, : width * spec.kernel].reshape(-1, width, spec.kernel).mean(-1)
        if isinstance(spec, Framed):
            return pcm[:, : spec.frames * spec.frame_length].reshape(-1, spec.frames, spec.frame_length)
        assert isinstance(spec, Trimmed)
        return pcm[:, : spec.length]


class Exported(nn.Module):
    """Raw audio -> per-head probabilities: the graph that is written."""

    def __init__(self, model: nn.Module, feature: str, task: Task) -> None:
        super().__init__()
        self.feature = FeatureOf(feature)
        self.model = exportable(model)
        self.slices = [(part.start, part.stop) for _, part in task.heads()]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        logits = self.model(self.feature(audio))
        return torch.cat([torch.softmax(logits[:, a:b], 1) for a, b in self.slices], 1)


def exportable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every :class:`~nsynth_train.frontend.LogMel`
    replaced by a :class:`ConvLogMel` of the same settings."""
    model = copy.deepcopy(model).cpu().eval()
    for name, child in list(model.named_modules()):
        if isinstance(child, frontend.LogMel):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], ConvLogMel(child.n_fft, child.hop, child.fb.shape[0]))
    return model


def heads_metadata(task: Task) -> list[dict[str, Any]]:
    """``[{"name", "classes", "start", "stop"}]``: each head's slice of the output columns."""
    return [{"name": head.name, "classes": list(head.class_names), "start": part.start, "stop": part.stop}
            for head, part in task.heads()]


def export_model(run: Path, out: Path, overwrite: bool = False, opset: int = OPSET,
                 record: bool = True) -> dict[str, Any]:
    """Write ``run``'s best checkpoint (or the checkpoint ``run`` names) to ``out`` as ONNX.

    Returns the export record, also appended to ``<run folder>/export.json`` (unless not
    ``record``): the file, its SHA-256, the opset, input and output names and shapes, the heads,
    and the versions used.

    Raises
    ------
    RunError
        ``out`` exists and ``overwrite`` is not set.
    ConfigError
        The ``onnx`` package (the exporter's dependency) is not installed.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise RunError(f"{out} exists; pass --overwrite to replace it")
    try:
        import onnx  # noqa: F401  (checked here: one clear line, before loading the run)
    except ImportError:
        raise ConfigError("export-model needs the onnx package: pip install -e '.[onnx]'") from None
    predictor = Predictor.load(run, "cpu")
    write_onnx(predictor, out, opset)
    heads = heads_metadata(predictor.task)
    entry = {"file": str(out.resolve()), "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
              "bytes": out.stat().st_size, "opset": opset, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "model": predictor.config.model, "task": predictor.task.name, "feature": predictor.config.feature,
              "input": {"name": "audio", "shape": ["batch", NOTE_SAMPLES], "dtype": "float32", "rate": 16000},
              "output": {"name": "probabilities", "shape": ["batch", predictor.task.outputs], "dtype": "float32"},
              "heads": heads, "versions": {n: _version(n) for n in ("torch", "onnx", "onnxruntime")}}
    if record:
        _record(run, entry)
    log.info("wrote %s (%s bytes, opset %d)", out, f"{entry['bytes']:,}", opset)
    return entry


def write_onnx(predictor: Predictor, out: Path, opset: int = OPSET) -> None:
    """Export ``predictor``'s model with its front end to ``out`` (written atomically), the heads,
    model and task in the file's metadata (``nsynth.*`` keys)."""
    import onnx

    net = Exported(predictor.model, predictor.config.feature, predictor.task).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic(out) as tmp, warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False: it needs no onnxscript) warns that it is the
        # legacy one, and of shapes it takes as constants: every input is 64,000 samples.
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, NOTE_SAMPLES),), str(tmp), input_names=["audio"],
                          output_names=["probabilities"], opset_version=opset, dynamo=False,
                          dynamic_axes={"audio": {0: "batch"}, "probabilities": {0: "batch"}})
        proto = onnx.load(str(tmp))
        meta = {"nsynth.heads": json.dumps(heads_metadata(predictor.task)), "nsynth.model": predictor.config.model,
                "nsynth.task": predictor.task.name, "nsynth.sample_rate": "16000",
                "nsynth.input": f"(batch, {NOTE_SAMPLES}) float32 mono audio in [-1, 1] at 16 kHz"}
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))


def _record(run: Path, record: dict[str, Any]) -> None:
    """Append ``record`` to the run folder's export.json (the folder of a checkpoint file)."""
    folder = Path(run) if Path(run).is_dir() else Path(run).parent
    path = folder / EXPORT_RECORD
    try:
        earlier = json.loads(path.read_text())["exports"]
    except (OSError, ValueError, KeyError, TypeError):
        earlier = []
    write_json(path, {"exports": [*earlier, record]})


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def report(record: dict[str, Any]) -> str:
    """What ``nsynth export-model`` prints."""
    heads = ", ".join(f"{h['name']} ({len(h['classes'])})" for h in record["heads"])
    return (f"wrote {record['file']} ({record['bytes'] / 2**20:.1f} MiB, ONNX opset {record['opset']}): "
            f"{record['model']} on the {record['task']} task\n"
            f"  input 'audio' (batch, {NOTE_SAMPLES}) float32 at 16 kHz -> 'probabilities' "
            f"(batch, {record['output']['shape'][1]}), a softmax per head: {heads}\n"
            f"  recorded in the run folder's {EXPORT_RECORD}")
