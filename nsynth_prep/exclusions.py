"""Lists of notes to leave out of a cache (``build-cache --exclude-notes FILE``): one note_str a
line, ``#`` comments. The project ships one: NSynth test's known noise notes
(``nsynth_prep/data/nsynth_noise_notes.txt``, named ``nsynth-noise``; its source is in its header).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from nsynth_prep.errors import ConfigError
from nsynth_prep.labels import NOTE_STR_RE

KNOWN_LISTS = {"nsynth-noise": "nsynth_noise_notes.txt"}  # name -> file in nsynth_prep/data/


@dataclass(frozen=True)
class NoteList:
    """A list of note names to leave out, and where it came from (``source``: the file, or the
    name of a shipped list)."""

    source: str
    notes: frozenset[str]

    def digest(self) -> str:
        """What the cache records of the list, and a rebuild compares: its source, its size and
        a hash of its sorted names (another list, another cache)."""
        text = "\n".join(sorted(self.notes)).encode()
        return f"{self.source} ({len(self.notes)} names, sha256 {hashlib.sha256(text).hexdigest()[:16]})"

    def left_out(self, note_str: np.ndarray) -> np.ndarray:
        """(N,) bool: which of the (N,) note names are on the list."""
        return np.isin(np.asarray(note_str).astype(str), sorted(self.notes))


def known_list_path(name: str) -> Path:
    """The file of a shipped list (:data:`KNOWN_LISTS`)."""
    return Path(str(resources.files("nsynth_prep") / "data" / KNOWN_LISTS[name]))


def read_note_list(path_or_name: str | Path) -> NoteList:
    """The note names of a list file, or of a shipped list by name (``nsynth-noise``).

    Raises
    ------
    ConfigError
        The file is missing or unreadable, or a line is not a note name (naming the line).
    """
    name = str(path_or_name)
    path = known_list_path(name) if name in KNOWN_LISTS else Path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the list of notes to exclude ({exc.__class__.__name__}: "
                          f"{getattr(exc, 'strerror', None) or exc})") from None
    notes = set()
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if entry.endswith(".wav"):  # a WAV's name is its note's, with the extension
            entry = entry[:-4]
        if not NOTE_STR_RE.match(entry):
            raise ConfigError(f"{path}:{number}: {entry!r} is not a note name such as guitar_acoustic_010-066-100")
        notes.add(entry)
    return NoteList(name if name in KNOWN_LISTS else str(path), frozenset(notes))
