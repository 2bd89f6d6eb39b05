"""prep render: NSynth-format notes from a General MIDI SoundFont (Debian's timgm6mb-soundfont).

The rendering tests need FluidSynth (``pip install -e '.[render]'`` + ``libfluidsynth3``) and
``/usr/share/sounds/sf2/TimGM6mb.sf2``; without them they are skipped with the reason (CI
installs both). The numerics, the GM table, the SoundFont reader and the one-line errors run
everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from cli import main
from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.corpus import note_audio
from nsynth_prep.corpus.gm_programs import GM_PROGRAMS, markdown_table, parse_programs, program_table
from nsynth_prep.corpus.soundfont import read_presets
from nsynth_prep.errors import ConfigError, RenderError, SourceError
from nsynth_prep.labels import FAMILIES, NOTE_SAMPLES, QUALITIES, SAMPLE_RATE, SOURCES
from nsynth_prep.readers.wav import read_pcm16

TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
ROOT = Path(__file__).resolve().parents[2]
# Three families with >= 3 instruments (so the automatic split fills valid and test), two with one.
PROGRAMS = "0-3,24-26,56-58,40,73"
OPTIONS = dict(programs=PROGRAMS, pitch_step=12, velocities="25,127")


def _renderer_missing() -> str | None:
    if not TIMGM.is_file():
        return f"{TIMGM} is not installed (Debian: apt-get install timgm6mb-soundfont)"
    try:
        from nsynth_prep.corpus.fluid import load_fluidsynth

        load_fluidsynth()
    except RenderError as exc:
        return str(exc)
    return None


needs_render = pytest.mark.skipif(_renderer_missing() is not None, reason=str(_renderer_missing()))


def _render(out: Path, formats: tuple[str, ...] = ("jsonwav",), workers: int = 1, fonts: tuple[Path, ...] = (TIMGM,),
            split_fonts: dict[str, list[Path]] | None = None, **options: object) -> object:
    from nsynth_prep.corpus.render import RenderConfig, render_corpus

    config = RenderConfig(**{**OPTIONS, **options, "formats": formats, "workers": workers})  # type: ignore[arg-type]
    return render_corpus(list(fonts), out, split_fonts, config, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a corpus, by relative path (the work folder's lock and state left out)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".render" not in p.parts}


def _examples(out: Path) -> dict[str, dict[str, dict]]:
    return {s: json.loads((out / f"nsynth-{s}" / "examples.json").read_text()) for s in ("train", "valid", "test")
            if (out / f"nsynth-{s}" / "examples.json").exists()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few programs of TimGM6mb in all three layouts, 2 workers."""
    if _renderer_missing():
        pytest.skip(str(_renderer_missing()))
    out = tmp_path_factory.mktemp("render") / "corpus"
    _render(out, ("jsonwav", "targz", "tfrecord"), workers=2)
    return out


# --- the rendered corpus ----------------------------------------------------------------------


@needs_render
def test_labels_follow_the_gm_table(rendered: Path) -> None:
    meta = json.loads((rendered / "render.json").read_text())
    program_of = {i["instrument"]: i["program"] for i in meta["instruments"]}
    assert sorted(set(program_of.values())) == sorted(parse_programs(PROGRAMS) or ())
    ids, instruments = set(), {}
    for split, entries in _examples(rendered).items():
        for key, e in entries.items():
            prog = GM_PROGRAMS[program_of[e["instrument"]]]
            assert (e["instrument_family_str"], e["instrument_source_str"]) == (prog.family, prog.source)
            assert FAMILIES[e["instrument_family"]] == prog.family and SOURCES[e["instrument_source"]] == prog.source
            assert prog.low <= e["pitch"] <= prog.high and e["velocity"] in (25, 127)
            assert key == f"{e['instrument_str']}-{e['pitch']:03d}-{e['velocity']:03d}" == e["note_str"]
            assert len(e["qualities"]) == len(QUALITIES) and e["sample_rate"] == SAMPLE_RATE
            assert e["qualities_str"] == [q for q, f in zip(QUALITIES, e["qualities"], strict=True) if f]
            assert not {q for q, f in zip(QUALITIES, e["qualities"], strict=True) if f} - set(note_audio.DERIVED_QUALITIES)
            assert instruments.setdefault(e["instrument_str"], (e["instrument"], split)) == (e["instrument"], split)
            ids.add(e["note"])
    assert len(ids) == sum(len(e) for e in _examples(rendered).values())  # note ids are unique
    assert len({i for i, _ in instruments.values()}) == len(instruments)  # instrument_str <-> instrument


@needs_render
def test_audio_is_nsynth_format_and_never_clips(rendered: Path) -> None:
    meta = json.loads((rendered / "render.json").read_text())
    peaks: dict[str, int] = {}
    for split, entries in _examples(rendered).items():
        for key, e in entries.items():
            path = rendered / f"nsynth-{split}" / "audio" / f"{key}.wav"
            with wave.open(str(path)) as w:
                assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 64000)
            x = read_pcm16(path.read_bytes(), key)
            assert x.shape == (NOTE_SAMPLES,)
            peak = int(np.abs(x.astype(np.int32)).max())
            assert note_audio.SILENT_PEAK * 32767 <= peak <= round(note_audio.TARGET_PEAK * 32767)
            assert e["qualities"] == note_audio.note_qualities(x)  # derived from the audio as written
            peaks[e["instrument_str"]] = max(peaks.get(e["instrument_str"], 0), peak)
    # The gain rule: each instrument's loudest note peaks at the target level.
    assert set(peaks.values()) == {round(note_audio.TARGET_PEAK * 32767)}
    assert len(peaks) == sum(1 for i in meta["instruments"] if i["notes"])


@needs_render
def test_automatic_split_is_instrument_disjoint(rendered: Path) -> None:
    examples = _examples(rendered)
    assert set(examples) == {"train", "valid", "test"}
    by_split = {s: {e["instrument"] for e in entries.values()} for s, entries in examples.items()}
    assert not by_split["train"] & by_split["valid"] and not by_split["train"] & by_split["test"]
    assert not by_split["valid"] & by_split["test"]
    # Keyboard, guitar and brass (4, 3 and 3 instruments) each give one to valid and one to test.
    for split in ("valid", "test"):
        assert {e["instrument_family_str"] for e in examples[split].values()} == {"keyboard", "guitar", "brass"}


@needs_render
def test_split_by_soundfont(tmp_path: Path) -> None:
    other = tmp_path / "other.sf2"
    shutil.copyfile(TIMGM, other)
    out = tmp_path / "out"
    _render(out, split_fonts={"train": [TIMGM], "test": [other]}, programs="0,24")
    meta = json.loads((out / "render.json").read_text())
    assert {(i["split"], i["font"]) for i in meta["instruments"]} == {("train", str(TIMGM)), ("test", str(other))}
    examples = _examples(out)
    assert set(examples) == {"train", "test"}
    assert not {e["instrument"] for e in examples["train"].values()} & {e["instrument"] for e in examples["test"].values()}
    with pytest.raises(ConfigError, match="every SoundFont must be named"):
        _render(tmp_path / "bad", fonts=(TIMGM, other), split_fonts={"train": [TIMGM]})


@needs_render
def test_render_is_deterministic(rendered: Path, tmp_path: Path) -> None:
    """Same fonts and options, one worker instead of two: the same bytes, every layout."""
    _render(tmp_path / "again", ("jsonwav", "targz", "tfrecord"), workers=1)
    first, second = _files(rendered), _files(tmp_path / "again")
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


@needs_render
def test_a_note_does_not_depend_on_what_was_rendered_before() -> None:
    from nsynth_prep.corpus.fluid import FluidRenderer

    fresh = FluidRenderer()
    alone = fresh.render(TIMGM, 0, 56, 60, 100)
    fresh.close()
    busy = FluidRenderer()
    for program, pitch in [(0, 40), (19, 36), (48, 72), (73, 84)]:  # long releases, other presets
        busy.render(TIMGM, 0, program, pitch, 127)
    assert np.array_equal(busy.render(TIMGM, 0, 56, 60, 100), alone)
    busy.close()


@needs_render
def test_an_interrupted_render_resumes_without_redoing_notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nsynth_prep.corpus import render

    reference = tmp_path / "reference"
    _render(reference, ("jsonwav", "tfrecord"))
    out = tmp_path / "out"
    real_encode, written = render.encode_pcm16, []

    def encode_then_die(pcm: np.ndarray) -> bytes:
        if len(written) == 40:  # like Ctrl-C, mid-way through an instrument
            raise KeyboardInterrupt
        written.append(1)
        return real_encode(pcm)

    monkeypatch.setattr(render, "encode_pcm16", encode_then_die)
    with pytest.raises(KeyboardInterrupt):
        _render(out, ("jsonwav", "tfrecord"))
    # Nothing claims to be complete: no examples.json, no TFRecord, and build-cache refuses the folder.
    assert not list(out.glob("nsynth-*/examples.json")) and not list(out.glob("*.tfrecord"))
    with pytest.raises(SourceError):
        build_cache(out, tmp_path / "cache", BuildConfig(), progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.glob("nsynth-*/audio/*.wav")}
    assert len(before) == 40
    unfinished = {p.name.split(".")[0] for p in (out / ".render" / "inst").glob("*.gain.json")} - {
        p.name.split(".")[0] for p in (out / ".render" / "inst").glob("*.done.json")}
    assert len(unfinished) == 1  # the one cut short, to be resumed note by note

    resumed: list[int] = []
    monkeypatch.setattr(render, "encode_pcm16", lambda pcm: resumed.append(1) or real_encode(pcm))
    _render(out, ("jsonwav", "tfrecord"))
    total = sum(len(e) for e in _examples(out).values())
    assert len(resumed) == total - 40  # the 40 written notes were not written again
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert _files(out) == _files(reference)
    # Run again once complete: nothing to do, and options that differ are refused.
    assert "already complete" in _render(out, ("jsonwav", "tfrecord")).report()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="other SoundFonts or options"):
        _render(out, ("jsonwav", "tfrecord"), velocities="100")


@needs_render
def test_build_cache_reads_the_render(rendered: Path, tmp_path: Path) -> None:
    caches = {}
    for fmt, name in [("jsonwav", "nsynth-valid"), ("tfrecord", "nsynth-valid.tfrecord"),
                      ("targz", "nsynth-valid.jsonwav.tar.gz")]:
        build_cache(rendered / name, tmp_path / fmt, BuildConfig(features=("pooled", "framed")), progress=False)
        caches[fmt] = zarr.open_group(tmp_path / fmt / "valid.zarr", mode="r")
    entries = _examples(rendered)["valid"]
    g = caches["jsonwav"]
    names = g["note_str"][:].tolist()
    assert sorted(names) == sorted(entries)
    for row, name in enumerate(names):
        e = entries[name]
        assert (int(g["family"][row]), int(g["source"][row]), int(g["pitch"][row]), int(g["velocity"][row])) == (
            e["instrument_family"], e["instrument_source"], e["pitch"], e["velocity"])
        assert int(g["note"][row]) == e["note"] and g["qualities"][row].tolist() == e["qualities"]
    audio = read_pcm16((rendered / "nsynth-valid" / "audio" / f"{names[0]}.wav").read_bytes(), names[0])
    assert np.array_equal(g["framed"][0].ravel(), audio[:16000])  # int16, as rendered
    for other in ("tfrecord", "targz"):
        for array in ("pooled", "framed", "family", "note"):
            assert np.array_equal(caches[other][array][...], g[array][...])


# --- one-line errors ---------------------------------------------------------------------------


def test_bad_soundfonts_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a soundfont")
    runner = CliRunner()
    for path, message in [(tmp_path / "missing.sf2", "no such SoundFont file"),
                          (tmp_path / "notes.txt", "not a SoundFont"), (tmp_path, "is a folder")]:
        result = runner.invoke(main, ["prep", "render", str(path), str(tmp_path / "out")])
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"error: {path}: {message}")
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.skipif(not TIMGM.is_file(), reason=f"{TIMGM} is not installed (apt-get install timgm6mb-soundfont)")
def test_without_fluidsynth_the_command_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # makes `import fluidsynth` fail
    result = CliRunner().invoke(main, ["prep", "render", str(TIMGM), str(tmp_path / "out"), "--programs", "0"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[render]'" in lines[0] and "libfluidsynth3" in lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["prep", "render", str(tmp_path / "x.sf2"), str(tmp_path / "out")]
    for extra, message in [(["--programs", "0-200"], "--programs"), (["--velocities", "0,300"], "--velocities"),
                           (["--split", "dev=a.sf2"], "--split"), (["--pitch-step", "0"], "--pitch-step")]:
        result = runner.invoke(main, [*base, *extra])
        assert result.exit_code == 1 and result.output.startswith("error: ") and message in result.output, result.output


# --- the SoundFont reader and the GM table -------------------------------------------------------


def _sf2(presets: list[tuple[str, int, int]]) -> bytes:
    """A minimal SoundFont: INFO, an empty sdta, and a pdta holding only preset headers."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return tag + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)

    phdr = b"".join(struct.pack("<20sHHHIII", n.encode(), prog, bank, 0, 0, 0, 0)
                    for n, bank, prog in [*presets, ("EOP", 0, 0)])
    body = b"sfbk" + chunk(b"LIST", b"INFO" + chunk(b"ifil", b"\2\0\1\0")) + chunk(b"LIST", b"sdta")
    body += chunk(b"LIST", b"pdta" + chunk(b"phdr", phdr))
    return chunk(b"RIFF", body)


def test_read_presets(tmp_path: Path) -> None:
    path = tmp_path / "tiny.sf2"
    path.write_bytes(_sf2([("Trumpet", 0, 56), ("Piano", 0, 0), ("Drums", 128, 0)]))
    assert [(p.name, p.bank, p.program) for p in read_presets(path)] == [
        ("Piano", 0, 0), ("Trumpet", 0, 56), ("Drums", 128, 0)]
    path.write_bytes(_sf2([])[:30])
    with pytest.raises(RenderError, match=r"tiny\.sf2: malformed SoundFont"):
        read_presets(path)
    if os.geteuid() != 0:  # root reads anything
        path.chmod(0)
        with pytest.raises(RenderError, match="cannot read"):
            read_presets(path)


def test_gm_table_and_family_map(tmp_path: Path) -> None:
    by_number = {p.number: p for p in GM_PROGRAMS}
    assert (by_number[0].family, by_number[0].source) == ("keyboard", "acoustic")
    assert (by_number[33].family, by_number[33].source) == ("bass", "electronic")
    assert (by_number[81].family, by_number[81].source) == ("synth_lead", "synthetic")
    assert by_number[90].family is None and by_number[118].family is None
    assert all(p.family in (*FAMILIES, None) and p.source in SOURCES and 0 <= p.low < p.high <= 127
               for p in GM_PROGRAMS)
    assert parse_programs("0-2,80") == {0, 1, 2, 80} and parse_programs(None) is None
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"21": {"family": "reed", "source": "acoustic"}, "0": None,
                                   "88": {"family": "synth_lead", "source": "synthetic", "pitch": [40, 80]}}))
    table = program_table(mapping)
    assert (table[21].family, table[0].family, table[88].family, table[88].low, table[88].high) == (
        "reed", None, "synth_lead", 40, 80)
    for bad, message in [({"200": None}, "not a GM program"), ({"1": {"family": "kazoo", "source": "acoustic"}},
                          "unknown family"), ({"1": {"family": "reed"}}, "expected null or"),
                         ({"1": {"family": "reed", "source": "acoustic", "pitch": [90, 10]}}, "pitch")]:
        mapping.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=message):
            program_table(mapping)
    with pytest.raises(ConfigError, match="no such --family-map"):
        program_table(tmp_path / "missing.json")


def test_the_render_docs_show_the_table() -> None:
    assert markdown_table() in (ROOT / "docs" / "render.md").read_text()


# --- the numerics -------------------------------------------------------------------------------


def test_decimate_is_the_filtered_signal_at_16_khz() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(note_audio.RENDER_SAMPLES)
    h = note_audio.lowpass_taps()
    direct = np.convolve(x, h)[note_audio.DELAY :: 3][:NOTE_SAMPLES]
    assert np.allclose(note_audio.decimate(x), direct, atol=1e-12)
    t = np.arange(note_audio.RENDER_SAMPLES) / note_audio.RENDER_RATE
    y = note_audio.decimate(0.5 * np.sin(2 * np.pi * 1000 * t))  # in the pass band: kept, not delayed
    t16 = np.arange(NOTE_SAMPLES) / SAMPLE_RATE
    assert np.abs(y[1000:-1000] - 0.5 * np.sin(2 * np.pi * 1000 * t16[1000:-1000])).max() < 1e-3
    alias = note_audio.decimate(0.5 * np.sin(2 * np.pi * 10_000 * t))  # would fold to 6 kHz
    assert np.abs(alias[1000:-1000]).max() < 0.5 * 10 ** (-78 / 20)


def test_gain_pcm_and_silence() -> None:
    assert note_audio.instrument_gain(np.array([0.1, 0.4, 0.2])) == pytest.approx(2.0)
    assert note_audio.instrument_gain(np.zeros(3)) == 0.0
    pcm = note_audio.to_pcm16(np.array([0.4, -0.4, 0.1]), 2.0)
    assert pcm.dtype == np.int16 and pcm.tolist() == [26214, -26214, 6553]
    assert note_audio.to_pcm16(np.array([2.0]), 1.0).tolist() == [32767]
    assert note_audio.is_silent(1e-4, 2.0) and not note_audio.is_silent(1e-3, 2.0)


def _tone(envelope: np.ndarray) -> np.ndarray:
    t = np.arange(NOTE_SAMPLES) / SAMPLE_RATE
    return np.round(envelope * 20000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def test_qualities_from_the_envelope() -> None:
    t = np.arange(NOTE_SAMPLES) / SAMPLE_RATE
    q = lambda env: {n for n, f in zip(QUALITIES, note_audio.note_qualities(_tone(env)), strict=True) if f}  # noqa: E731
    release = np.where(t < 3, 1.0, np.exp(-(t - 3) / 0.05))
    assert q(np.exp(-t / 0.1)) == {"fast_decay", "percussive"}  # a struck bar
    assert q(release) == set()  # an organ: flat, short release
    assert q(np.where(t < 3, 1.0, np.exp(-(t - 3) / 1.0))) == {"long_release"}
    assert q(np.minimum(1, t / 0.3) * release) == set()  # a slow attack is not percussive
    swell = (1 - 0.7 * np.sin(np.pi * np.clip(t, 0, 2) / 2)) * release  # down 10 dB and back up
    assert q(swell) == {"nonlinear_env"}
    assert note_audio.note_qualities(np.zeros(NOTE_SAMPLES, np.int16)) == [0] * len(QUALITIES)
    assert note_audio.envelope_db(np.zeros(640)).shape == (4,)
