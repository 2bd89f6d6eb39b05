"""Classify a user's own audio with a trained run: ``nsynth predict`` and :func:`predict_audio`.

Audio is brought to what every model was trained on, and each change is reported: channels
mixed down to mono (their mean), resampled to 16 kHz (:mod:`nsynth_train.resample`), cut or
zero-padded to NSynth's 4 s (64,000 samples); then the model's feature is computed exactly as
the cache builder does (:mod:`nsynth_prep.features`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsynth_prep.errors import CheckpointError, ConfigError, NsynthError, SourceError, WavFormatError
from nsynth_prep.features import feature_spec
from nsynth_prep.labels import NOTE_SAMPLES, SAMPLE_RATE
from nsynth_prep.readers.wav_any import read_wav_any
from nsynth_train import checkpoint
from nsynth_train.config import TrainConfig, pick_device
from nsynth_train.evaluate import head_softmax, resolve_checkpoint
from nsynth_train.models import build_model
from nsynth_train.resample import resample
from nsynth_train.tasks import Task


@dataclass
class Predictor:
    """A trained model ready for inference: its config, task and train (family, source) pairs."""

    model: torch.nn.Module
    config: TrainConfig
    task: Task
    device: torch.device
    train_pairs: list[list[int]] = field(default_factory=list)

    @staticmethod
    def load(path: Path, device: str = "auto") -> Predictor:
        """From a run folder (its best.pt) or a checkpoint file."""
        ckpt = resolve_checkpoint(Path(path))
        state = checkpoint.load(ckpt)
        try:
            config = TrainConfig.from_dict(state["config"])
            task = Task.from_dict(state["task"])
        except (TypeError, KeyError, ValueError, ConfigError) as exc:
            raise CheckpointError(f"{ckpt}: config not understood ({exc})") from None
        config = replace(config, device=device)
        dev = pick_device(device)
        model = build_model(config.model, task.outputs)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{ckpt}: weights do not fit a {config.model} "
                                  f"({str(exc).splitlines()[0]})") from None
        return Predictor(model.to(dev).eval(), config, task, dev, state["extra"].get("train_pairs", []))

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """(N, 64000) float32 mono 16 kHz notes -> (N, outputs) probabilities (per head)."""
        spec = feature_spec(self.config.feature)
        # The model was trained on 16-bit audio: quantise as NSynth's WAVs are, then compute the
        # feature exactly as the cache did (int16 samples for framed/trimmed, float means for pooled).
        pcm = np.clip(np.rint(np.asarray(audio, np.float64) * 32768.0), -32768, 32767).astype(np.int16)
        x = spec.compute(pcm).astype(np.float32) * np.float32(spec.scale)
        with torch.no_grad():
            logits = self.model(torch.from_numpy(x).to(self.device)).float()
            return head_softmax(logits, self.task).cpu().numpy()

    def top(self, probs: np.ndarray, k: int) -> dict[str, list[dict[str, Any]]]:
        """One note's (outputs,) probabilities -> each head's ``k`` best classes, best first."""
        out = {}
        for head, part in self.task.heads():
            p = probs[part]
            best = np.argsort(-p, kind="stable")[:k]
            out[head.name] = [{"class": head.class_names[i], "probability": float(p[i])} for i in best]
        return out


MIN_RATE, MAX_RATE = 1_000, 1_000_000  # Hz: below, 4 s is a handful of samples; above, no recorder writes


def fit_audio(samples: np.ndarray, rate: int) -> tuple[np.ndarray, list[str]]:
    """(frames,) or (frames, channels) float audio at ``rate`` -> ((64000,) float32 mono 16 kHz,
    the list of what was changed to get there).

    Raises
    ------
    ConfigError
        No frames, a rate outside 1 kHz .. 1 MHz, or samples that are (or become, when mixed to
        mono or resampled) NaN or infinite.
    """
    x = np.asarray(samples, np.float32)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise ConfigError(f"audio must be (frames,) or (frames, channels) with frames > 0, not {x.shape}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ConfigError(f"a sample rate of {rate} Hz is not audio this tool can use "
                          f"(from {MIN_RATE:,} to {MAX_RATE:,} Hz)")
    _require_finite(x, "")
    changes = []
    full = -(-x.shape[0] * SAMPLE_RATE // rate)  # samples at 16 kHz before the cut
    if x.ndim == 2:
        if x.shape[1] > 1:
            changes.append(f"mixed {x.shape[1]} channels to mono")
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked, not warned of
            x = x.mean(1)
        _require_finite(x, " when mixed to mono (samples beyond the float32 range)")
    # Only the first 4 s are used: the resampler reads only the input those need, so a long (or
    # long-claiming) file costs no more than 4 s of output.
    if rate != SAMPLE_RATE:
        with np.errstate(over="ignore", invalid="ignore"):
            x = resample(x, rate, SAMPLE_RATE, max_out=NOTE_SAMPLES)
        changes.append(f"resampled {rate} -> {SAMPLE_RATE} Hz")
        _require_finite(x, " when resampled (samples beyond the float32 range)")
    if full > NOTE_SAMPLES:
        changes.append(f"cut to the first 4.00 s (of {full / SAMPLE_RATE:.2f} s)")
        x = x[:NOTE_SAMPLES]
    elif len(x) < NOTE_SAMPLES:
        changes.append(f"padded with silence to 4.00 s (from {len(x) / SAMPLE_RATE:.2f} s)")
        x = np.pad(x, (0, NOTE_SAMPLES - len(x)))
    peak = float(np.abs(x).max())
    if peak > 1:  # float WAVs may exceed full scale; the caches never do
        x = x / peak
        changes.append(f"scaled down from a peak of {peak:.2f} to 1")
    return x.astype(np.float32), changes


def _require_finite(x: np.ndarray, when: str) -> None:
    """Raise :class:`ConfigError` when ``x`` holds NaN or inf (``when``: the step that made them)."""
    if not np.isfinite(x).all():
        raise ConfigError(f"audio holds NaN or infinite samples{when}")


def predict_audio(ckpt: Path | Predictor, audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
                  top: int = 3) -> dict[str, Any]:
    """Classify one note from Python.

    Parameters
    ----------
    ckpt
        A run folder, a checkpoint file, or a loaded :class:`Predictor` (to classify many notes).
    audio
        (frames,) or (frames, channels) float samples in [-1, 1] at ``sample_rate``.

    Returns
    -------
    dict
        ``{"predictions": {head: [{"class", "probability"}, ...]}, "changes": [...]}``
        (heads: ``family`` or ``source``, or both for a ``both`` run).
    """
    predictor = ckpt if isinstance(ckpt, Predictor) else Predictor.load(Path(ckpt))
    x, changes = fit_audio(audio, sample_rate)
    probs = predictor.probabilities(x[None])[0]
    return {"predictions": predictor.top(probs, top), "changes": changes}


def audio_files(inputs: list[Path]) -> list[tuple[Path, str | None]]:
    """WAV files, folders of them (sorted; ``*.wav`` at any depth) or NSynth split folders
    (``audio/`` with the true labels of examples.json) -> ``[(file, true label or None)]``."""
    out: list[tuple[Path, str | None]] = []
    for path in inputs:
        path = Path(path)
        if path.is_file():
            out.append((path, None))
        elif (path / "examples.json").is_file() and (path / "audio").is_dir():
            try:
                meta = json.loads((path / "examples.json").read_text())
            except (ValueError, OSError) as exc:
                raise SourceError(f"{path / 'examples.json'}: not readable JSON ({exc})") from None
            for wav in sorted((path / "audio").glob("*.wav")):
                m = meta.get(wav.stem, {})
                truth = f"{m.get('instrument_family_str', '?')} {m.get('instrument_source_str', '?')}" if m else None
                out.append((wav, truth))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
            if not found:
                raise SourceError(f"{path}: no .wav files in this folder")
            out += [(p, None) for p in found]
        else:
            raise SourceError(f"{path}: no such file or folder")
    return out


def predict_files(run: Path, inputs: list[Path], top: int = 3, device: str = "auto") -> list[dict[str, Any]]:
    """Each WAV's top classes: ``[{"file", "sample_rate", "channels", "seconds", "changes",
    "predictions", "truth"?}]``. A file that cannot be read stops with one line naming it."""
    predictor = Predictor.load(run, device)
    results = []
    for path, truth in audio_files(inputs):
        try:
            samples, rate = read_wav_any(path)
            x, changes = fit_audio(samples, rate)
        except WavFormatError:
            raise
        except NsynthError as exc:
            raise WavFormatError(f"{path}: {exc}") from None
        entry: dict[str, Any] = {"file": str(path), "sample_rate": rate, "channels": int(samples.shape[1]),
                                 "seconds": round(samples.shape[0] / rate, 3), "changes": changes,
                                 "predictions": predictor.top(predictor.probabilities(x[None])[0], top)}
        if truth:
            entry["truth"] = truth
        results.append(entry)
    return results


def format_results(results: list[dict[str, Any]]) -> str:
    """The human-readable form of :func:`predict_files`' results."""
    lines = []
    for r in results:
        head = f"{r['file']} ({r['sample_rate']:,} Hz, {r['channels']} ch, {r['seconds']:.2f} s"
        head += f"; {', '.join(r['changes'])})" if r["changes"] else ")"
        lines.append(head + (f"  true: {r['truth']}" if "truth" in r else ""))
        for name, best in r["predictions"].items():
            lines.append(f"  {name:7s} " + ", ".join(f"{b['class']} {100 * b['probability']:.1f}%" for b in best))
    return "\n".join(lines)
