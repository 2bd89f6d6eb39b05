"""nsynth predict: WAVs of other formats, rates, channels and lengths; the resampler; bad audio."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from nsynth_prep.errors import ConfigError, WavFormatError
from nsynth_prep.readers.wav_any import read_wav_any
from nsynth_train.loop import TrainConfig, train
from nsynth_train.predict import Predictor, fit_audio, predict_audio, predict_files
from nsynth_train.resample import resample


def write_wav(path: Path, x: np.ndarray, rate: int, kind: str, extensible: bool = False) -> None:
    """x (frames, channels) float in [-1, 1] -> a WAV of ``kind`` (pcm8/16/24/32, float32/64)."""
    _, channels = x.shape
    if kind == "pcm8":
        data, tag, bits = np.round(x * 127 + 128).astype(np.uint8).tobytes(), 1, 8
    elif kind == "pcm16":
        data, tag, bits = np.round(x * 32767).astype("<i2").tobytes(), 1, 16
    elif kind == "pcm24":
        v = np.round(x * (2 ** 23 - 1)).astype("<i4").reshape(-1)
        data = np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], 1).astype(np.uint8).tobytes()
        tag, bits = 1, 24
    elif kind == "pcm32":
        data, tag, bits = np.round(x * (2 ** 31 - 1)).astype("<i4").tobytes(), 1, 32
    else:
        bits = 32 if kind == "float32" else 64
        data, tag = x.astype(f"<f{bits // 8}").tobytes(), 3
    block = channels * bits // 8
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0) + guid
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 3) + b"abc\x00"
    chunks += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)


@pytest.mark.parametrize(("kind", "tol"), [("pcm8", 2 / 100), ("pcm16", 1e-4), ("pcm24", 1e-6), ("pcm32", 1e-7),
                                           ("float32", 1e-7), ("float64", 1e-7)])
@pytest.mark.parametrize("extensible", [False, True])
def test_wav_reader_formats(tmp_path: Path, kind: str, tol: float, extensible: bool) -> None:
    x = np.stack([np.linspace(-0.9, 0.9, 101), np.linspace(0.5, -0.5, 101)], 1)
    write_wav(tmp_path / "a.wav", x, 22_050, kind, extensible)
    y, rate = read_wav_any(tmp_path / "a.wav")
    assert rate == 22_050 and y.shape == (101, 2) and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=tol)


def test_wav_reader_errors(tmp_path: Path) -> None:
    (tmp_path / "text.wav").write_text("hello, not audio")
    with pytest.raises(WavFormatError, match=r"text\.wav: not a WAV file"):
        read_wav_any(tmp_path / "text.wav")
    write_wav(tmp_path / "cut.wav", np.zeros((10, 1)), 16_000, "pcm16")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "cut.wav").read_bytes()[:30])
    with pytest.raises(WavFormatError, match=r"cut\.wav"):
        read_wav_any(tmp_path / "cut.wav")
    path = tmp_path / "alaw.wav"
    write_wav(path, np.zeros((10, 1)), 8000, "pcm8")
    raw = bytearray(path.read_bytes())
    raw[20:22] = struct.pack("<H", 6)  # A-law
    path.write_bytes(bytes(raw))
    with pytest.raises(WavFormatError, match=r"alaw\.wav: format tag 6"):
        read_wav_any(path)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(44_100, 16_000), (48_000, 16_000), (8_000, 16_000),
                                                   (22_050, 16_000), (16_000, 16_000)])
def test_resample_keeps_a_tone_and_removes_aliases(rate_in: int, rate_out: int) -> None:
    t = np.arange(rate_in) / rate_in
    y = resample(np.sin(2 * np.pi * 440 * t), rate_in, rate_out)
    assert len(y) == rate_out and y.dtype == np.float32
    ref = np.sin(2 * np.pi * 440 * np.arange(len(y)) / rate_out)
    assert np.abs(y - ref)[100:-100].max() < 1e-3
    if rate_in > 2 * 9_000:  # above the new Nyquist: must vanish, not fold back to 6 kHz
        z = resample(np.sin(2 * np.pi * 10_000 * t), rate_in, rate_out)
        assert np.abs(z[100:-100]).max() < 1e-3
    stereo = resample(np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], 1), rate_in, rate_out)
    assert stereo.shape == (rate_out, 2) and np.allclose(stereo[:, 0], y, atol=1e-6)


def test_fit_audio_says_what_it_changed() -> None:
    x, changes = fit_audio(np.zeros((44_100, 2), np.float32), 44_100)
    assert x.shape == (64_000,) and changes == ["mixed 2 channels to mono", "resampled 44100 -> 16000 Hz",
                                                "padded with silence to 4.00 s (from 1.00 s)"]
    x, changes = fit_audio(np.full(80_000, 2.0, np.float32), 16_000)
    assert changes == ["cut to the first 4.00 s (of 5.00 s)", "scaled down from a peak of 2.00 to 1"]
    assert fit_audio(np.zeros(64_000), 16_000)[1] == []


LOW_RATE_SCRIPT = """
import sys
from nsynth_prep.errors import NsynthError
from nsynth_prep.readers.wav_any import read_wav_any
from nsynth_train.predict import fit_audio
for path in sys.argv[1:]:
    try:
        fit_audio(*read_wav_any(path))
    except NsynthError as exc:
        print(f"refused {exc}")
"""


def test_absurd_sample_rates_are_refused_quickly(tmp_path: Path) -> None:
    """A 128 KB WAV claiming 3 Hz (was: still resampling after 120 s) or 1 Hz (was: 7.6 GiB)."""
    paths = []
    for rate in (3, 1):
        paths.append(tmp_path / f"at{rate}.wav")
        write_wav(paths[-1], np.zeros((64_000, 1)), rate, "pcm16")
    # A subprocess with a timeout: before the fix this ran for minutes instead of failing.
    done = subprocess.run([sys.executable, "-c", LOW_RATE_SCRIPT, *map(str, paths)], capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.splitlines() == [f"refused a sample rate of {r} Hz is not audio this tool can use "
                                        "(from 1,000 to 1,000,000 Hz)" for r in (3, 1)]
    with pytest.raises(ConfigError, match="sample rate of 2000000 Hz"):
        fit_audio(np.zeros(10), 2_000_000)


def test_resampling_reads_only_the_first_four_seconds() -> None:
    """An hour at the lowest rate costs what 4 s do, and gives the same 4 s as resampling it all."""
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 3_600_000).astype(np.float32)
    start = time.perf_counter()
    y, changes = fit_audio(x, 1_000)
    assert time.perf_counter() - start < 5
    assert changes == ["resampled 1000 -> 16000 Hz", "cut to the first 4.00 s (of 3600.00 s)"]
    np.testing.assert_array_equal(y, resample(x[:5_000], 1_000, 16_000)[:64_000])


def test_samples_that_overflow_when_mixed_are_refused() -> None:
    """Float samples near the float32 maximum become inf in the mono mix: refused, not predicted."""
    with pytest.raises(ConfigError, match="audio holds NaN or infinite samples when mixed to mono"):
        fit_audio(np.full((100, 2), 3e38, np.float32), 16_000)
    with pytest.raises(ConfigError, match="NaN or infinite samples"):
        fit_audio(np.array([0.1, np.nan], np.float32), 16_000)


@pytest.fixture(scope="module")
def run(run_caches: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch CNN of the both task (two heads) on the session's caches, without figures."""
    out = tmp_path_factory.mktemp("predict_run") / "run"
    train(TrainConfig(task="both", model="cnn", cache_dir=str(run_caches), epochs=1, batch_size=32), out,
          progress=False, figures=False)
    return out


def test_predict_wavs_of_other_rates_channels_lengths(run: Path, corpus: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_wav(tmp_path / "a.wav", rng.uniform(-0.5, 0.5, (88_200, 2)), 44_100, "pcm24")
    write_wav(tmp_path / "b.wav", rng.uniform(-0.5, 0.5, (48_000, 1)), 8_000, "float32")
    (tmp_path / "sub").mkdir()
    write_wav(tmp_path / "sub" / "c.wav", rng.uniform(-0.5, 0.5, (64_000, 1)), 16_000, "pcm16")
    results = predict_files(run, [tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "sub"], top=2)
    assert [Path(r["file"]).name for r in results] == ["a.wav", "b.wav", "c.wav"]
    assert results[0]["changes"][:2] == ["mixed 2 channels to mono", "resampled 44100 -> 16000 Hz"]
    assert results[1]["changes"] == ["resampled 8000 -> 16000 Hz", "cut to the first 4.00 s (of 6.00 s)"]
    assert results[2]["changes"] == []
    for r in results:
        assert set(r["predictions"]) == {"family", "source"} and len(r["predictions"]["family"]) == 2
        p = [b["probability"] for b in r["predictions"]["source"]]
        assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1 + 1e-6
    split = predict_files(run, [corpus / "nsynth-test"], top=1)
    assert len(split) == 30 and all("truth" in r for r in split)


def test_predict_from_python_and_cli(run: Path, tmp_path: Path) -> None:
    x = np.sin(2 * np.pi * 220 * np.arange(32_000) / 32_000).astype(np.float32)
    out = predict_audio(run, x, 32_000, top=3)
    assert len(out["predictions"]["family"]) == 3 and out["changes"][0] == "resampled 32000 -> 16000 Hz"
    predictor = Predictor.load(run)
    assert predict_audio(predictor, x, 32_000, top=3) == out
    write_wav(tmp_path / "a.wav", x[:, None], 32_000, "pcm16")
    result = CliRunner().invoke(main, ["predict", str(run), str(tmp_path / "a.wav"), "--json", "--top", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data[0]["sample_rate"] == 32_000 and len(data[0]["predictions"]["family"]) == 1
    result = CliRunner().invoke(main, ["predict", str(run), str(tmp_path / "a.wav")])
    assert result.exit_code == 0 and "a.wav (32,000 Hz, 1 ch, 1.00 s; resampled" in result.output
    assert "\n  family " in result.output and "\n  source " in result.output


def _one_line(run: Path, path: Path, message: str) -> None:
    result = CliRunner().invoke(main, ["predict", str(run), str(path)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert f"{path}: {message}" in result.output


def test_predict_bad_audio_is_one_line(run: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    _one_line(run, tmp_path / "bad.wav", "no fmt chunk")


def test_predict_refuses_truncated_and_non_finite_wavs(run: Path, tmp_path: Path) -> None:
    """A data chunk claiming 2 GB that holds 2,000 bytes (was: exit 0 on those bytes); float
    samples that overflow to inf in the mono mix, or that are NaN (was: a prediction)."""
    path = tmp_path / "cut.wav"
    write_wav(path, np.zeros((1_000, 1)), 16_000, "pcm16")
    raw = bytearray(path.read_bytes())
    at = raw.index(b"data")
    raw[at + 4:at + 8] = struct.pack("<I", 2_000_000_000)
    path.write_bytes(bytes(raw))
    _one_line(run, path, "truncated: data chunk claims 2,000,000,000 bytes, file holds 2,000")
    write_wav(tmp_path / "huge.wav", np.full((16_000, 2), 3.4e38), 16_000, "float32")
    _one_line(run, tmp_path / "huge.wav", "audio holds NaN or infinite samples when mixed to mono")
    write_wav(tmp_path / "nan.wav", np.full((16_000, 1), np.nan), 16_000, "float32")
    _one_line(run, tmp_path / "nan.wav", "float samples that are NaN or infinite")
    write_wav(tmp_path / "low.wav", np.zeros((16_000, 1)), 3, "pcm16")
    _one_line(run, tmp_path / "low.wav", "a sample rate of 3 Hz")


def test_predict_on_a_labelled_split_ends_with_accuracy_and_confusion_counts(run: Path, corpus: Path) -> None:
    from nsynth_train.predict_score import format_scores, score_results

    results = predict_files(run, [corpus / "nsynth-test"], top=1)
    scored = score_results(results)
    assert set(scored) == {"family", "source"}
    for head, s in scored.items():
        field = 0 if head == "family" else 1
        right = sum(r["predictions"][head][0]["class"] == r["truth"].split()[field] for r in results)
        assert s["files"] == 30 and s["correct"] == right and s["accuracy"] == right / 30
        assert sum(n for row in s["confusion"].values() for n in row.values()) == 30
    assert score_results([{k: v for k, v in r.items() if k != "truth"} for r in results]) == {}  # unlabelled
    out = CliRunner().invoke(main, ["predict", str(run), str(corpus / "nsynth-test")]).stdout
    text = format_scores(scored)
    assert out.rstrip().endswith(text) and f"({scored['family']['correct']} of 30 labelled files)" in text
