"""FluidSynth, offline and deterministic: one note of one preset at a time, as float samples.

The optional extra ``render`` (``pip install -e '.[render]'``) installs pyfluidsynth (ctypes
bindings, pure Python); the library itself comes from the system (Debian/Ubuntu
``libfluidsynth3``, macOS ``brew install fluid-synth``). No audio driver is started: samples are pulled with
``fluid_synth_write_float`` (pyfluidsynth's own ``get_samples`` returns dithered int16, and
FluidSynth's dither sequence runs on from call to call, so the same note would not give the
same bytes twice).

What would make a note depend on anything but (SoundFont, bank, preset, pitch, velocity):

* reverb and chorus: turned off (they keep a tail and state across notes);
* threads: ``synth.cpu-cores`` 1, so voices are mixed in a fixed order;
* FluidSynth's 64-sample blocks: every write is a whole number of blocks, so each note starts
  on a block boundary with nothing left over from the last;
* voice objects are reused, and a reused voice ramps its first block from the gain its last
  note ended with: before each note the same note is struck for one block and silenced, so the
  note proper always starts from its own gain (``tests/test_render.py`` checks that a note is
  byte-identical whatever was rendered before it).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from nsynth_prep.corpus.note_audio import RENDER_RATE, RENDER_SAMPLES
from nsynth_prep.errors import RenderError

BLOCK = 64  # FluidSynth's internal block (FLUID_BUFSIZE), fixed at compile time
HOLD = 3 * RENDER_RATE  # note-off after 3 s (a whole number of blocks)
TOTAL = -(-RENDER_SAMPLES // BLOCK) * BLOCK  # 4 s and the filter's look-ahead, in whole blocks
INSTALL = ("nsynth prep render needs FluidSynth: the render extra (pip install -e '.[render]' in the nsynth "
           "checkout: pyfluidsynth) and the FluidSynth library (Debian/Ubuntu: apt-get install libfluidsynth3; "
           "macOS: brew install fluid-synth)")
SETTINGS: dict[str, Any] = {
    "synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1,
    "synth.dynamic-sample-loading": 0, "synth.polyphony": 256,
}


def load_fluidsynth() -> Any:
    """Import pyfluidsynth, or raise one :class:`RenderError` line saying what to install."""
    try:
        import fluidsynth
    except ImportError as exc:  # no module, or pyfluidsynth found no library ("Couldn't find ...")
        missing = "pyfluidsynth" if getattr(exc, "name", None) == "fluidsynth" else "the FluidSynth library"
        raise RenderError(f"{INSTALL}; {missing} is missing") from None
    except OSError as exc:  # the library was found but cannot be loaded
        raise RenderError(f"{INSTALL}; loading the library failed: {exc}") from None
    return fluidsynth


def fluidsynth_version() -> str:
    """The FluidSynth library's version, e.g. ``"2.3.1"``."""
    fl = load_fluidsynth()
    parts = [ctypes.c_int() for _ in range(3)]
    fl.fluid_version(*parts)
    return ".".join(str(p.value) for p in parts)


class FluidRenderer:
    """A FluidSynth synthesizer at :data:`RENDER_RATE` rendering single notes on channel 0.

    Not thread-safe; one per process. SoundFonts are loaded once, on first use.
    """

    def __init__(self) -> None:
        fl = load_fluidsynth()
        self._write = fl.cfunc("fluid_synth_write_float", ctypes.c_int,
                               ("synth", ctypes.c_void_p, 1), ("len", ctypes.c_int, 1),
                               ("lout", ctypes.c_void_p, 1), ("loff", ctypes.c_int, 1), ("lincr", ctypes.c_int, 1),
                               ("rout", ctypes.c_void_p, 1), ("roff", ctypes.c_int, 1), ("rincr", ctypes.c_int, 1))
        self._voices = fl.cfunc("fluid_synth_get_active_voice_count", ctypes.c_int, ("synth", ctypes.c_void_p, 1))
        if self._write is None or self._voices is None:
            raise RenderError(f"{INSTALL}; this FluidSynth lacks fluid_synth_write_float or "
                              "fluid_synth_get_active_voice_count (FluidSynth 2 has both)")
        self._synth = fl.Synth(gain=1.0, samplerate=float(RENDER_RATE), **SETTINGS)
        self._fonts: dict[str, int] = {}
        self._buf = np.zeros((2, TOTAL), np.float32)

    def close(self) -> None:
        self._synth.delete()

    def _font(self, path: str) -> int:
        if path not in self._fonts:
            sfid = self._synth.sfload(path)
            if sfid < 0:
                raise RenderError(f"{path}: FluidSynth cannot load this SoundFont")
            self._fonts[path] = sfid
        return self._fonts[path]

    def _run(self, start: int, count: int) -> None:
        """Synthesize samples ``[start, start + count)`` of both channels into the buffer."""
        left, right = self._buf[0], self._buf[1]
        self._write(self._synth.synth, count, left.ctypes.data + 4 * start, 0, 1,
                    right.ctypes.data + 4 * start, 0, 1)

    def _silence(self) -> None:
        """Stop every voice and run blocks until nothing sounds (so the next note starts clean)."""
        self._synth.all_sounds_off(0)
        for _ in range(64):
            self._run(0, BLOCK)
            if not self._buf[:, :BLOCK].any() and self._voices(self._synth.synth) == 0:
                return
        raise RuntimeError("FluidSynth voices did not stop after all_sounds_off")

    def render(self, font: Path | str, bank: int, program: int, pitch: int, velocity: int) -> np.ndarray:
        """One note: held 3 s, released, at 48 kHz.

        Returns
        -------
        (RENDER_SAMPLES,) float64, the mean of the left and right channels (NSynth is mono).
        """
        synth = self._synth
        if synth.program_select(0, self._font(str(font)), bank, program) != 0:
            raise RenderError(f"{font}: no preset {program} in bank {bank}")
        synth.noteon(0, pitch, velocity)  # the priming strike (see the module docstring)
        self._run(0, BLOCK)
        self._silence()
        synth.noteon(0, pitch, velocity)
        self._run(0, HOLD)
        synth.noteoff(0, pitch)
        self._run(HOLD, TOTAL - HOLD)
        out = (self._buf[0, :RENDER_SAMPLES].astype(np.float64) + self._buf[1, :RENDER_SAMPLES]) / 2
        self._silence()
        return out
