"""The project's own errors: one base class, so the CLI can tell them from bugs.

Everything raised here means "the input or the settings are wrong" and is printed by the
command line as one line naming the file, record or note. Any other exception is a bug in
nsynth and is shown with its traceback.
"""

from __future__ import annotations


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
    """The disk refused a write: full, read-only, or no permission."""


class RenderError(NsynthError):
    """A SoundFont that is missing, unreadable or not a SoundFont, or a renderer that is not installed."""
