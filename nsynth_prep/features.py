"""Feature specifications: what each cached array holds and how it is computed.

Each spec is a frozen dataclass; its ``to_dict()`` is stored in the cache's metadata so that
a cache says exactly how each feature was made. Raw-audio features (``framed``, ``trimmed``)
are the int16 samples themselves (``dtype`` int16, ``scale`` 1/32768: multiply to get floats
in [-1, 1)); ``pooled`` is float32 means in [-1, 1] (``scale`` 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from nsynth_prep.errors import ConfigError
from nsynth_prep.kernels import audio as kernels


@dataclass(frozen=True)
class Pooled:
    """First ``length`` samples, averaged over windows of ``kernel`` every ``stride``: (2048,) float32."""

    length: int = 51_200
    kernel: int = 25
    stride: int = 25
    name: ClassVar[str] = "pooled"
    dtype: ClassVar[np.dtype] = np.dtype(np.float32)
    scale: ClassVar[float] = 1.0
    chunk_rows: ClassVar[int] = 1024  # 8 MiB chunks

    def __post_init__(self) -> None:
        if not (0 < self.kernel <= self.length and self.stride > 0):
            raise ValueError(f"pooled: kernel {self.kernel}, stride {self.stride} do not fit length {self.length}")

    @property
    def row_shape(self) -> tuple[int, ...]:
        return ((self.length - self.kernel) // self.stride + 1,)

    def seconds(self, sample_rate: int) -> np.ndarray:
        """(width,) the centre of each window, in seconds from the note's start."""
        return (np.arange(self.row_shape[0]) * self.stride + self.kernel / 2) / sample_rate

    def compute(self, audio: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(N, S) int16 or float32 -> (N, 2048) float32."""
        return kernels.pool_mean(audio, self.length, self.kernel, self.stride, out)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class Framed:
    """First ``frames * frame_length`` samples as frames: (100, 160) int16, the first second."""

    frames: int = 100
    frame_length: int = 160
    name: ClassVar[str] = "framed"
    dtype: ClassVar[np.dtype] = np.dtype(np.int16)
    scale: ClassVar[float] = kernels.INT16_SCALE
    chunk_rows: ClassVar[int] = 256  # 8 MiB chunks

    def __post_init__(self) -> None:
        if self.frames < 1 or self.frame_length < 1:
            raise ValueError(f"framed: {self.frames} frames of {self.frame_length}")

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (self.frames, self.frame_length)

    def seconds(self, sample_rate: int) -> np.ndarray:
        """(frames * frame_length,) the time of each sample of a flattened row, in seconds."""
        return np.arange(self.frames * self.frame_length) / sample_rate

    def compute(self, audio: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(N, S) int16 or exact float32 -> (N, 100, 160) int16."""
        return kernels.frame(audio, self.frames, self.frame_length, out)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class Trimmed:
    """First ``length`` samples: (51200,) int16, dropping the near-silent tail of each note."""

    length: int = 51_200
    name: ClassVar[str] = "trimmed"
    dtype: ClassVar[np.dtype] = np.dtype(np.int16)
    scale: ClassVar[float] = kernels.INT16_SCALE
    chunk_rows: ClassVar[int] = 32  # 3.1 MiB chunks

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"trimmed: length {self.length}")

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (self.length,)

    def seconds(self, sample_rate: int) -> np.ndarray:
        """(length,) the time of each sample, in seconds."""
        return np.arange(self.length) / sample_rate

    def compute(self, audio: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(N, S) int16 or exact float32 -> (N, 51200) int16."""
        return kernels.trim(audio, self.length, out)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


FeatureSpec = Pooled | Framed | Trimmed
FEATURES: dict[str, type[Pooled] | type[Framed] | type[Trimmed]] = {
    "pooled": Pooled, "framed": Framed, "trimmed": Trimmed,
}


def feature_spec(name: str) -> FeatureSpec:
    """The default spec of a feature by name."""
    try:
        return FEATURES[name]()
    except KeyError:
        raise ConfigError(f"unknown feature {name!r}; expected one of {', '.join(FEATURES)}") from None


def spec_from_dict(params: dict[str, Any]) -> FeatureSpec:
    """Rebuild a spec from its ``to_dict()`` (as stored in cache metadata).

    Raises
    ------
    ValueError
        Not a feature this nsynth knows, or parameters that are missing, extra, not integers
        or out of range.
    """
    if not isinstance(params, dict):
        raise ValueError(f"feature params {params!r} are not an object")
    rest = dict(params)
    cls = FEATURES.get(rest.pop("name", None))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown feature {params.get('name')!r}")
    if any(type(v) is not int for v in rest.values()):
        raise ValueError(f"{cls.name} params must be integers, got {rest}")
    try:
        return cls(**rest)
    except TypeError:
        raise ValueError(f"{cls.name} params {sorted(rest)} are not its own") from None
