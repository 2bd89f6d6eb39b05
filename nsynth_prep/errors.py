"""The project's own errors: one base class, so the CLI can tell them from bugs.

Everything raised here means "the input or the settings are wrong" and is printed by the
command line as one line naming the file, record or note. Any other exception is a bug in
nsynth and is shown with its traceback.
"""

from __future__ import annotations

import resource


class NsynthError(Exception):
    """Base of every error that is about the user's data or settings, not about our code."""


class ConfigError(NsynthError):
    """An option or configuration value that is out of range or unknown."""


class SourceError(NsynthError):
    """A source that cannot be read: missing files, malformed metadata, bad audio."""


class LabelError(SourceError):
    """An examples.json entry or TFRecord example whose labels are missing or inconsistent."""


class WavFormatError(SourceError):
    """A WAV file that is not 16-bit PCM mono 16 kHz with 64,000 frames, or is malformed."""


class TFRecordError(SourceError):
    """A TFRecord file whose framing, CRC or Example content is wrong."""


class CacheError(NsynthError):
    """A cache that is missing, incomplete, of another format version, or inconsistent."""


class LockedError(NsynthError):
    """Another process is writing the same cache or run folder."""


class CheckpointError(NsynthError):
    """A checkpoint that is missing, corrupt, foreign, or of another version."""


class RunError(NsynthError):
    """A run folder that cannot be used as asked (it holds a finished run, or other settings)."""


class StorageError(NsynthError):
    """The disk refused a write: full, read-only, or no permission. ``refused``: the first half
    of the message (what and why), for a caller that knows better what to do next."""

    refused: str = ""


class RenderError(NsynthError):
    """A SoundFont that is missing, unreadable or not a SoundFont, or a renderer that is not installed."""


# --- running out of memory, said in one line (what could not be had, and the limit) -------------
def address_space_limit() -> int | None:
    """This process's limit on its address space in bytes (``ulimit -v``, RLIMIT_AS); None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def out_of_memory(exc: BaseException) -> str | None:
    """The one line for ``exc`` when it means memory ran out (None otherwise): a MemoryError
    (numpy's says what it failed to allocate), or numba's compiler failing to load under an
    address-space limit (llvmlite maps ~100 MiB and reports it as a missing library)."""
    limit = address_space_limit()
    if isinstance(exc, MemoryError):
        what = str(exc).strip() or "an allocation failed"
    elif isinstance(exc, OSError) and "llvmlite" in str(exc) and limit is not None:
        what = "numba's compiler (llvmlite) could not be loaded"
    else:
        return None
    where = (f"this process may use at most {limit / 2**20:,.0f} MiB of address space (ulimit -v)" if limit
             else "the machine (or its container) has no more to give")
    return (f"out of memory: {what}; {where}. Give it more memory, or ask for less at once: fewer --workers "
            f"(each holds its own block of notes), a smaller --batch-size when training")
