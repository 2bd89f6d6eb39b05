"""One corpus from several: ``nsynth prep combine SOURCE... OUT``.

``prep render`` (sampled General MIDI instruments) and ``prep synth`` (synthetic timbres) each
write a corpus of JSON+WAV split folders, and each numbers its instruments from 0: the same
``bass_synthetic_000`` can be two different instruments in two corpora. Combining renumbers every
instrument so that each keeps one number and one name across the splits of the combined corpus
(so ``nsynth audit`` still sees a leak between splits), and each split of ``OUT`` holds the notes
of that split of every source. The WAVs are hard-linked where the file system allows, else
copied; ``combined.json`` records each source and every note's name before and after.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from nsynth_prep.corpus.layouts import SplitWriter
from nsynth_prep.errors import ConfigError, SourceError
from nsynth_prep.labels import FAMILIES, SOURCES, SPLITS, note_str, parse_example
from nsynth_prep.storage.store import write_atomic

INDEX_LIMIT = 1000  # note_str holds the instrument's index in three digits


def combine_corpora(sources: list[Path], out: Path) -> dict[str, int]:
    """Write the corpus of every split of ``sources`` (corpus folders holding ``nsynth-<split>/``
    JSON+WAV folders) into ``out``; returns the notes per split.

    Raises
    ------
    ConfigError
        ``out`` exists and is not empty, a source holds no split folder, or a family and source
        would need more than 1,000 instruments.
    SourceError
        A source's ``examples.json`` is unreadable, or names a note without its WAV.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: not empty; combine writes a new corpus (choose a new or empty folder)")
    for src in sources:
        if not any((Path(src) / f"nsynth-{s}" / "examples.json").is_file() for s in SPLITS):
            raise ConfigError(f"{src}: no nsynth-<split>/examples.json here; give corpus folders made by "
                              "prep synth or prep render (JSON+WAV)")
    ids: dict[tuple[int, int], int] = {}  # (source, old instrument id) -> new id
    indices: dict[tuple[int, int], int] = {}  # (source, old instrument id) -> new index in its family_source
    next_index: dict[str, int] = {}
    renamed: dict[str, list[dict[str, str]]] = {}
    counts: dict[str, int] = {}
    note_id = 0
    for split in SPLITS:
        folders = [(k, Path(src) / f"nsynth-{split}") for k, src in enumerate(sources)]
        folders = [(k, f) for k, f in folders if (f / "examples.json").is_file()]
        if not folders:
            continue
        (out / f"nsynth-{split}" / "audio").mkdir(parents=True, exist_ok=True)
        renamed[split] = []
        with SplitWriter(out, split, ("jsonwav",), 0, wavs_written=True) as writer:
            for k, folder in folders:
                for old_name, entry in sorted(_examples(folder).items()):
                    labels = parse_example(old_name, entry, str(folder / "examples.json"))  # one line if bad
                    family_source = f"{FAMILIES[labels.family]}_{SOURCES[labels.source]}"
                    key = (k, labels.instrument)
                    if key not in indices:
                        indices[key] = next_index.get(family_source, 0)
                        next_index[family_source] = indices[key] + 1
                        if indices[key] >= INDEX_LIMIT:
                            raise ConfigError(f"{family_source}: more than {INDEX_LIMIT} instruments in the combined "
                                              "corpus; note names hold three digits")
                    new_id = ids.setdefault(key, len(ids))
                    name = note_str(labels.family, labels.source, indices[key], labels.pitch, labels.velocity)
                    wav = folder / "audio" / f"{old_name}.wav"
                    if not wav.is_file():
                        raise SourceError(f"{wav}: WAV missing for note {old_name}")
                    _link_or_copy(wav, out / f"nsynth-{split}" / "audio" / f"{name}.wav")
                    writer.add({**entry, "note_str": name, "instrument_str": name.rsplit("-", 2)[0],
                                "instrument": new_id, "note": note_id})
                    renamed[split].append({"source": str(Path(sources[k]).resolve()), "from": old_name, "to": name})
                    note_id += 1
            counts[split] = len(writer.entries)
    record: dict[str, Any] = {"generator": "nsynth prep combine", "sources": [str(Path(s).resolve()) for s in sources],
                              "notes": counts, "renamed": renamed}
    write_atomic(out / "combined.json", json.dumps(record, indent=1).encode())
    return counts


def _examples(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        entries = json.loads((folder / "examples.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SourceError(f"{folder / 'examples.json'}: not readable JSON ({exc})") from None
    if not isinstance(entries, dict):
        raise SourceError(f"{folder / 'examples.json'}: not a JSON object of notes")
    return entries


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no bytes copied) where the file system allows one, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
