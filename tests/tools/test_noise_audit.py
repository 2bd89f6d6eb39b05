"""Noise-like notes: spectral flatness by hand, the audit finding planted noise notes (and only
them), build-cache --exclude-notes leaving them out and recording which, and the shipped list."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hand_corpus import write_hand_corpus

from nsynth_prep.cache import format as cache_format
from nsynth_prep.cache.skipped import skipped_notes
from nsynth_prep.errors import ConfigError
from nsynth_prep.exclusions import known_list_path, read_note_list
from nsynth_prep.tools.audit import audit, plot_noise_like
from nsynth_prep.tools.inspect import describe
from nsynth_prep.tools.noise import SUSTAIN_FROM, SUSTAIN_TO, spectral_flatness, sustained_spectrum

PLANTED = ["keyboard_acoustic_006-060-075", "guitar_acoustic_007-067-127"]


def test_spectral_flatness_by_hand() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(51_200) / 16_000
    notes = np.stack([
        rng.uniform(-0.5, 0.5, len(t)),  # white noise
        0.8 * np.sin(2 * np.pi * 440 * t) * np.exp(-t / 2),  # a decaying tone
        0.1 * sum(np.sin(2 * np.pi * k * 220 * t) / k for k in range(1, 8)) + 0.01 * rng.standard_normal(len(t)),
        # a plucked note gone to quantisation noise after 0.3 s: the decayed frames are not measured
        0.8 * np.sin(2 * np.pi * 440 * t) * np.exp(-t / 0.1) + np.round(rng.standard_normal(len(t))) / 32768,
        np.zeros(len(t)),  # silence: nothing to measure
    ])
    flatness = spectral_flatness(notes)
    assert flatness[0] > 0.95
    assert (flatness[1:4] < 0.05).all() and flatness[4] == 0.0


def reference_spectrum(audio: np.ndarray) -> np.ndarray:
    """sustained_spectrum written the plain way: every frame indexed out, |FFT|**2, masked sum."""
    x = np.asarray(audio, np.float64)
    start, stop = int(SUSTAIN_FROM * 16_000), min(x.shape[1], int(SUSTAIN_TO * 16_000))
    count = max(0, (stop - start - 512) // 256 + 1)
    if count == 0:
        return np.zeros((len(x), 256))
    index = start + np.arange(count)[:, None] * 256 + np.arange(512)[None, :]
    power = np.abs(np.fft.rfft(x[:, index] * np.hanning(512), axis=-1))[..., 1:257] ** 2
    energy = power.sum(-1)
    loud = (energy >= energy.max(1, keepdims=True) * 10 ** (-30 / 10)) & (energy > 0)
    return (power * loud[..., None]).sum(1) / np.maximum(loud.sum(1), 1)[:, None]


@pytest.mark.parametrize("samples", [51_200, 16_000, 4_000 + 512, 4_000 + 511, 100])
def test_sustained_spectrum_matches_the_plain_reference(samples: int) -> None:
    rng = np.random.default_rng(samples)
    t = np.arange(samples) / 16_000
    notes = np.stack([rng.uniform(-1, 1, samples), 0.5 * np.sin(2 * np.pi * 330 * t) * np.exp(-t / 0.05),
                      np.zeros(samples), np.full(samples, 0.25)])
    got, want = sustained_spectrum(notes), reference_spectrum(notes)
    assert got.shape == want.shape == (4, 256)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


@pytest.fixture(scope="module")
def noisy_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("noisy")
    write_hand_corpus(out, {"test": PLANTED})
    return out / "nsynth-test"


@pytest.mark.slow
def test_audit_finds_the_planted_noise_notes(noisy_corpus: Path, tmp_path: Path, cli: Callable) -> None:
    assert cli("prep", "build-cache", noisy_corpus, "--cache", tmp_path, "--feature", "trimmed").exit_code == 0
    report = audit([tmp_path / "test.zarr"])
    found = report.caches[0].noise_like
    assert sorted(n["note"] for n in found) == sorted(PLANTED) and all(n["flatness"] > 0.9 for n in found)
    assert report.problem_count() == 2  # and nothing else: the 34 tones are not noise
    assert report.caches[0].flattest is not None and report.caches[0].flattest["note"] in PLANTED
    assert plot_noise_like(report, tmp_path / "fig") == [tmp_path / "fig" / "noise_like.png"]
    r = cli("audit", tmp_path / "test.zarr", "--strict", "--plot", tmp_path / "fig2")
    assert r.exit_code == 1 and "noise-like (spectral flatness > 0.5): 2" in r.output
    assert (tmp_path / "fig2" / "noise_like.png").is_file()


def test_exclude_notes_leaves_them_out_and_records_which(noisy_corpus: Path, tmp_path: Path, cli: Callable) -> None:
    listed = tmp_path / "noise.txt"
    # A WAV's name works too; a name that is in no split is counted, not an error.
    listed.write_text(f"# planted noise\n{PLANTED[0]}\n{PLANTED[1]}.wav  # the second\nbrass_acoustic_046-090-050\n")
    r = cli("prep", "build-cache", noisy_corpus, "--cache", tmp_path / "c", "--feature", "trimmed",
            "--exclude-notes", listed)
    assert r.exit_code == 0, r.output
    assert "skipped 2 notes" in r.output and f"excluded: listed in {listed}" in r.output
    c = cache_format.open_cache(tmp_path / "c" / "test.zarr")
    assert len(c) == 34 and not set(PLANTED) & set(c.labels().note_str.tolist())
    assert sorted(s.note for s in skipped_notes(c)) == sorted(PLANTED)
    assert c.meta.build.rows.exclude_notes.startswith(f"{listed} (3 names, sha256 ")
    assert describe(c.path)["filters"]["exclude_notes"] == c.meta.build.rows.exclude_notes  # inspect says so
    clean = audit([c.path])
    assert clean.problem_count() == 0 and clean.caches[0].flattest is not None
    assert clean.caches[0].flattest["flatness"] < 0.05  # the flattest of the tones left
    # The same cache from another list is refused, naming the option.
    listed.write_text(f"{PLANTED[0]}\n")
    r = cli("prep", "build-cache", noisy_corpus, "--cache", tmp_path / "c", "--feature", "pooled",
            "--exclude-notes", listed)
    assert r.exit_code == 1 and "--exclude-notes was" in r.output


def test_note_lists(tmp_path: Path) -> None:
    shipped = read_note_list("nsynth-noise")
    assert shipped.source == "nsynth-noise" and len(shipped.notes) == 125
    assert {n.rsplit("-", 2)[0] for n in shipped.notes} == {"brass_acoustic_046"}
    assert {int(n.split("-")[1]) for n in shipped.notes} == set(range(84, 109))
    assert "magenta/magenta issue 2092" in known_list_path("nsynth-noise").read_text()
    bad = tmp_path / "bad.txt"
    bad.write_text("guitar_acoustic_010-066-100\nnot a note\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: 'not a note' is not a note name"):
        read_note_list(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_note_list(tmp_path / "missing.txt")
