"""Read the preset list of a SoundFont (SF2, or SF3 with compressed samples) without a synthesizer.

A SoundFont is a RIFF file of form ``sfbk`` with three lists: ``INFO``, ``sdta`` (the samples,
most of the file) and ``pdta`` (the articulation). The presets are the ``phdr`` records of
``pdta``: a 20-byte name, preset number, bank number and four fields we do not need; the last
record is the terminal ``EOP``. Reading them here, by seeking past the samples, tells a
non-SoundFont file from a real one with a precise message before any renderer is loaded, and
lists the instruments the same way whichever renderer is installed.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nsynth_prep.errors import RenderError

PHDR_SIZE = 38  # bytes per preset header record
PERCUSSION_BANK = 128  # GM SoundFonts keep their drum kits in bank 128


@dataclass(frozen=True)
class Preset:
    """One preset of a SoundFont: what a MIDI channel plays after a bank and program select."""

    name: str
    bank: int
    program: int


def read_presets(path: Path) -> list[Preset]:
    """The presets of the SoundFont at ``path``, sorted by (bank, program).

    Raises
    ------
    RenderError
        The file is missing, unreadable, not a RIFF ``sfbk`` file, or its preset table is
        malformed; the message names the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            presets = _parse(f, size, str(path))
    except IsADirectoryError:
        raise RenderError(f"{path}: is a folder, not a SoundFont file") from None
    except FileNotFoundError:
        raise RenderError(f"{path}: no such SoundFont file") from None
    except OSError as exc:
        why = "permission denied" if exc.errno == errno.EACCES else (exc.strerror or str(exc))
        raise RenderError(f"{path}: cannot read the SoundFont ({why})") from None
    return sorted(presets, key=lambda p: (p.bank, p.program))


def _parse(f: BinaryIO, size: int, name: str) -> list[Preset]:
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise RenderError(f"{name}: not a SoundFont (an .sf2/.sf3 file starts with a RIFF 'sfbk' header)")
    pos = 12
    while pos + 12 <= size:  # top-level LIST chunks: INFO, sdta, pdta
        f.seek(pos)
        chunk_id, chunk_size, list_type = struct.unpack("<4sI4s", f.read(12))
        if chunk_id == b"LIST" and list_type == b"pdta":
            return _parse_pdta(f, pos + 12, min(pos + 8 + chunk_size, size), name)
        pos += 8 + chunk_size + (chunk_size & 1)
    raise RenderError(f"{name}: malformed SoundFont: no preset table (pdta list)")


def _parse_pdta(f: BinaryIO, start: int, end: int, name: str) -> list[Preset]:
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
        if chunk_id == b"phdr":
            data = f.read(chunk_size)
            if len(data) < chunk_size or chunk_size % PHDR_SIZE or chunk_size < 2 * PHDR_SIZE:
                raise RenderError(f"{name}: malformed SoundFont: preset table of {chunk_size} bytes")
            presets = []
            for k in range(chunk_size // PHDR_SIZE - 1):  # the last record is the terminal 'EOP'
                raw, program, bank = struct.unpack_from("<20sHH", data, k * PHDR_SIZE)
                label = raw.split(b"\0", 1)[0].decode("latin-1").strip()
                presets.append(Preset(label, int(bank), int(program)))
            return presets
        pos += 8 + chunk_size + (chunk_size & 1)
    raise RenderError(f"{name}: malformed SoundFont: no preset headers (phdr chunk)")
