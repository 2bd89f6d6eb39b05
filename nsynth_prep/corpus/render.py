"""``nsynth prep render``: an NSynth-format corpus played from SoundFonts, note by note.

Each note is held 3 s and released for 1 s at 48 kHz by FluidSynth (:mod:`.fluid`), brought to
16 kHz mono (:func:`.note_audio.decimate`) and scaled by its instrument's gain
(:func:`.note_audio.instrument_gain`); notes that stay near silence (keys the preset has no
sample for) are dropped and counted. Instruments are rendered in parallel, each by one worker.

Resume: the state lives in ``OUT/.render/``. A worker first renders every note of its
instrument to find the gain and stores it (``inst/<id>.gain.json``), then writes each note's WAV
file through a temporary name and a rename, and finally the instrument's entries
(``inst/<id>.done.json``). A rerun of the same command skips finished instruments and, within an
unfinished one, every note whose WAV file exists. WAV files go straight to
``OUT/nsynth-<split>/audio/`` with ``--format jsonwav`` (else to ``OUT/.render/audio/``);
examples.json, the archives and TFRecord files are written last, once every instrument is done,
so a folder without them is visibly unfinished. Every note depends only on its SoundFont,
preset, pitch and velocity, so the output is byte-identical whatever the workers or
interruptions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nsynth_prep.corpus import note_audio
from nsynth_prep.corpus.fluid import FluidRenderer, fluidsynth_version
from nsynth_prep.corpus.gm_programs import parse_programs, program_table
from nsynth_prep.corpus.layouts import FORMATS, SPLITS, SplitWriter
from nsynth_prep.corpus.render_plan import Instrument, parse_velocities, plan
from nsynth_prep.cpus import process_map
from nsynth_prep.errors import ConfigError
from nsynth_prep.labels import FAMILIES, QUALITIES, SAMPLE_RATE, SOURCES
from nsynth_prep.progress import Progress
from nsynth_prep.readers.wav import encode_pcm16, read_pcm16
from nsynth_prep.storage.atomic import remove_stale
from nsynth_prep.storage.lock import exclusive
from nsynth_prep.storage.store import storage_errors, write_atomic

log = logging.getLogger(__name__)

WORK = ".render"
FORMAT_VERSION = 1  # of the work folder and the rendering; a change invalidates an unfinished render
CACHE_BYTES = 64 << 20  # per worker: notes kept from the gain pass instead of being rendered again


@dataclass(frozen=True)
class RenderConfig:
    """The options of ``prep render`` besides the SoundFonts and OUT."""

    programs: str | None = None  # "0-87,104-111"; None: every program with a family
    pitch_step: int = 1
    velocities: str = "25,50,75,100,127"
    formats: tuple[str, ...] = ("jsonwav",)
    workers: int = 2
    seed: int = 0  # the automatic split
    family_map: Path | None = None


@dataclass
class RenderSummary:
    """What a render wrote; ``report()`` is the CLI's summary."""

    out: str
    formats: list[str]
    notes: dict[str, int] = field(default_factory=dict)
    instruments: dict[str, int] = field(default_factory=dict)
    silent_notes: int = 0
    silent_instruments: int = 0
    seconds: float = 0.0
    already_complete: bool = False

    def report(self) -> str:
        splits = ", ".join(f"{s} {self.notes[s]:,} notes ({self.instruments[s]} instruments)" for s in self.notes)
        what = "already complete" if self.already_complete else f"rendered in {self.seconds:.0f} s"
        return (f"{self.out} ({', '.join(self.formats)}): {splits}; {what}; {self.silent_notes:,} silent notes dropped "
                f"({self.silent_instruments} instruments entirely silent)")


def render_corpus(fonts: Sequence[Path], out: Path, split_fonts: dict[str, list[Path]] | None = None,
                  config: RenderConfig = RenderConfig(), progress: bool = True) -> RenderSummary:
    """Render the corpus, or continue an interrupted render of the same fonts and options.

    Parameters
    ----------
    fonts
        SoundFont files (.sf2/.sf3); may be empty when ``split_fonts`` names them.
    out
        The corpus folder: ``nsynth-<split>/``, ``nsynth-<split>.jsonwav.tar.gz`` and/or
        ``nsynth-<split>.tfrecord`` as ``config.formats`` asks, and ``render.json`` (every
        instrument's SoundFont, preset and gain).
    split_fonts
        Whole SoundFonts per split (``--split``); None for the automatic instrument split.

    Raises
    ------
    RenderError
        A SoundFont is missing, unreadable or not a SoundFont, or FluidSynth is not installed.
    ConfigError
        Bad options, or ``out`` holds something other than a render with these options.
    """
    started = time.perf_counter()
    for f in config.formats:
        if f not in FORMATS:
            raise ConfigError(f"unknown format {f!r}; expected one of {', '.join(FORMATS)}")
    if config.workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {config.workers}")
    formats = tuple(f for f in FORMATS if f in config.formats)
    table = program_table(config.family_map)
    instruments = plan(fonts, split_fonts, table, parse_programs(config.programs), config.pitch_step,
                       parse_velocities(config.velocities), config.seed)
    fingerprint = _fingerprint(instruments, split_fonts is not None, formats, config.seed)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: OUT is a file; give a new or empty folder")
    work = out / WORK
    with storage_errors(out), exclusive(work / "lock", f"render {out}"):
        done = _claim(out, work, fingerprint)
        if done is not None:
            return RenderSummary(**{**done, "already_complete": True})
        audio_root = out if "jsonwav" in formats else work / "audio"
        todo = [i for i in instruments if not (work / "inst" / f"{i.id}.done.json").exists()]
        _render_all(todo, audio_root, work, config.workers, progress, len(instruments))
        summary = RenderSummary(str(out), list(formats))
        _assemble(instruments, out, work, audio_root, formats, config.seed, summary, progress)
        summary.seconds = time.perf_counter() - started
        write_atomic(work / "complete.json", json.dumps(asdict(summary)).encode())
        shutil.rmtree(work / "inst", ignore_errors=True)
        shutil.rmtree(work / "audio", ignore_errors=True)
    return summary


def _fingerprint(instruments: list[Instrument], by_font: bool, formats: tuple[str, ...], seed: int) -> dict[str, Any]:
    """Everything the output depends on: a rerun with the same fingerprint resumes."""
    fonts = {i.font: str(Path(i.font).resolve()) for i in instruments}  # the same from any folder
    return {
        "version": FORMAT_VERSION, "fluidsynth": fluidsynth_version(), "formats": list(formats),
        "split": "by font" if by_font else f"automatic, seed {seed}",
        "fonts": sorted([path, os.stat(path).st_size, os.stat(path).st_mtime_ns] for path in set(fonts.values())),
        "instruments": [[fonts[i.font], i.bank, i.program, i.family, i.source, i.split, list(i.pitches),
                         list(i.velocities)] for i in instruments],
    }


def _claim(out: Path, work: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """Check that ``out`` is new, or holds a render of this fingerprint; returns its summary if complete."""
    plan_file = work / "plan.json"
    if plan_file.exists():
        if json.loads(plan_file.read_text()) != fingerprint:
            raise ConfigError(f"{out} holds a render of other SoundFonts or options; remove it or choose another OUT")
        complete = work / "complete.json"
        if complete.exists():
            return dict(json.loads(complete.read_text()))
        log.info("resuming the render in %s", out)
    else:
        others = [p.name for p in out.iterdir() if p.name != WORK] if out.is_dir() else []
        if others:
            raise ConfigError(f"{out} already holds files ({others[0]}...) and no render; choose a new or empty folder")
        work.mkdir(parents=True, exist_ok=True)
        write_atomic(plan_file, json.dumps(fingerprint).encode())
    for folder in [work, *out.glob("nsynth-*/audio")]:
        remove_stale(folder, recursive=folder == work)  # files an interrupted writer never renamed
    return None


# --- the workers -------------------------------------------------------------------------------

_RENDERER: list[FluidRenderer] = []  # one per process, made on first use (after the fork)


def _render_all(todo: list[Instrument], audio_root: Path, work: Path, workers: int, progress: bool,
                total_instruments: int) -> None:
    (work / "inst").mkdir(parents=True, exist_ok=True)
    for split in {i.split for i in todo}:
        (audio_root / f"nsynth-{split}" / "audio").mkdir(parents=True, exist_ok=True)
    notes = sum(len(i.pitches) * len(i.velocities) for i in todo)
    if todo and len(todo) < total_instruments:
        log.info("%d of %d instruments left to render", len(todo), total_instruments)
    jobs = [(i, str(audio_root), str(work)) for i in sorted(todo, key=lambda i: -len(i.pitches))]  # big first
    with Progress(notes, "render", enabled=progress) as bar:
        if workers == 1 or len(jobs) <= 1:
            try:
                for job in jobs:
                    bar.update(_render_instrument(job))
            finally:  # free the synthesizer and its SoundFonts (FluidR3 is 148 MB)
                while _RENDERER:
                    _RENDERER.pop().close()
        else:
            # Spawned, not forked: a child forked from a process that has loaded FluidSynth (or runs
            # other threads: zarr's I/O loop, tqdm's monitor) can inherit a held lock and hang in
            # sfload. Each worker makes its own synthesizer.
            with contextlib.closing(process_map(_render_instrument, jobs, min(workers, len(jobs)), start="spawn",
                                                ordered=False)) as rendered:
                for n in rendered:
                    bar.update(n)


def _render_instrument(job: tuple[Instrument, str, str]) -> int:
    """Render one instrument's notes (those not on disk yet); returns how many notes it plays."""
    inst, audio_root, work = job
    if not _RENDERER:
        _RENDERER.append(FluidRenderer())
    renderer = _RENDERER[0]
    notes = inst.notes()
    audio_dir = Path(audio_root) / f"nsynth-{inst.split}" / "audio"
    gain_file = Path(work) / "inst" / f"{inst.id}.gain.json"

    def signal(pitch: int, velocity: int) -> np.ndarray:
        """(64000,) float32 at 16 kHz; float32 so that a kept and a re-rendered note are the same bits."""
        return note_audio.decimate(renderer.render(inst.font, inst.bank, inst.program, pitch, velocity)).astype(np.float32)

    kept: dict[int, np.ndarray] = {}
    if gain_file.exists():
        peaks = json.loads(gain_file.read_text())["peaks"]
    else:
        peaks = []
        for k, (pitch, velocity, _, _) in enumerate(notes):
            x = signal(pitch, velocity)
            peaks.append(float(np.abs(x).max()))
            if (len(kept) + 1) * x.nbytes <= CACHE_BYTES:
                kept[k] = x
        write_atomic(gain_file, json.dumps({"peaks": peaks, "gain": note_audio.instrument_gain(np.array(peaks))}).encode())
    gain = note_audio.instrument_gain(np.array(peaks))
    entries, silent = [], []
    for k, (pitch, velocity, note_id, name) in enumerate(notes):
        if note_audio.is_silent(peaks[k], gain):
            silent.append(name)
            continue
        path = audio_dir / f"{name}.wav"
        if path.exists():  # written by an interrupted run (whole: files appear by rename)
            pcm = read_pcm16(path.read_bytes(), str(path))
        else:
            pcm = note_audio.to_pcm16(kept.pop(k) if k in kept else signal(pitch, velocity), gain)
            write_atomic(path, encode_pcm16(pcm))
        entries.append(_entry(inst, pitch, velocity, note_id, name, note_audio.note_qualities(pcm)))
    done = {"entries": entries, "silent": silent, "gain": gain}
    write_atomic(Path(work) / "inst" / f"{inst.id}.done.json", json.dumps(done).encode())
    return len(notes)


def _entry(inst: Instrument, pitch: int, velocity: int, note_id: int, name: str, qualities: list[int]) -> dict[str, Any]:
    """The examples.json entry of one note, every NSynth key."""
    return {
        "qualities": qualities, "pitch": pitch, "note": note_id, "instrument_source_str": SOURCES[inst.source],
        "velocity": velocity, "instrument_str": inst.instrument_str, "instrument": inst.id,
        "sample_rate": SAMPLE_RATE, "qualities_str": [q for q, f in zip(QUALITIES, qualities, strict=True) if f],
        "instrument_source": inst.source, "note_str": name, "instrument_family": inst.family,
        "instrument_family_str": FAMILIES[inst.family],
    }


# --- the layouts ---------------------------------------------------------------------------------


def _assemble(instruments: list[Instrument], out: Path, work: Path, audio_root: Path, formats: tuple[str, ...],
              seed: int, summary: RenderSummary, progress: bool) -> None:
    """Write examples.json, archives and TFRecords of every split, then ``render.json``."""
    records = []
    for split in SPLITS:
        members = [i for i in instruments if i.split == split]
        if not members:
            continue
        dones = {i.id: json.loads((work / "inst" / f"{i.id}.done.json").read_text()) for i in members}
        total = sum(len(d["entries"]) for d in dones.values())
        audio_dir = audio_root / f"nsynth-{split}" / "audio"
        with (SplitWriter(out, split, formats, seed, wavs_written="jsonwav" in formats) as writer,
              Progress(total, f"write {split}", enabled=progress and writer.needs_audio()) as bar):
            for inst in members:
                for entry in dones[inst.id]["entries"]:
                    if writer.needs_audio():
                        wav = (audio_dir / f"{entry['note_str']}.wav").read_bytes()
                        writer.add(entry, read_pcm16(wav, entry["note_str"]), wav)
                    else:
                        writer.add(entry)
                    bar.update(1)
        summary.notes[split] = total
        summary.instruments[split] = sum(1 for d in dones.values() if d["entries"])
        summary.silent_notes += sum(len(d["silent"]) for d in dones.values())
        summary.silent_instruments += sum(1 for d in dones.values() if not d["entries"])
        records += [{"instrument": i.id, "instrument_str": i.instrument_str, "split": split, "font": i.font,
                     "bank": i.bank, "program": i.program, "preset": i.preset, "gain": dones[i.id]["gain"],
                     "notes": len(dones[i.id]["entries"]), "silent": len(dones[i.id]["silent"])} for i in members]
    meta = {"fluidsynth": fluidsynth_version(), "render_rate": note_audio.RENDER_RATE,
            "target_peak": note_audio.TARGET_PEAK, "silent_peak": note_audio.SILENT_PEAK,
            "derived_qualities": list(note_audio.DERIVED_QUALITIES), "instruments": records}
    write_atomic(out / "render.json", json.dumps(meta, indent=1).encode())
