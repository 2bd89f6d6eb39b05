"""Feature specifications: what each cached array holds and how it is computed.

Each spec is a frozen dataclass; its ``to_dict()`` is stored in the cache attrs so that a
cache says exactly how each feature was made. Every feature is float32 in [-1, 1]
(int16 samples / 32768, or NSynth's TFRecord floats).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from . import kernels
from .errors import ConfigError


@dataclass(frozen=True)
class Pooled:
    """First ``length`` samples, averaged over windows of ``kernel`` every ``stride``: (2048,)."""

    length: int = 51_200
    kernel: int = 25
    stride: int = 25
    name: ClassVar[str] = "pooled"
    chunk_rows: ClassVar[int] = 1024  # 8 MiB chunks

    @property
    def row_shape(self) -> tuple[int, ...]:
        return ((self.length - self.kernel) // self.stride + 1,)

    def compute(self, audio: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(N, S) int16 or float32 -> (N, 2048) float32."""
        return kernels.pool_mean(audio, self.length, self.kernel, self.stride, out)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class Framed:
    """First ``frames * frame_length`` samples as frames: (100, 160), the first second."""

    frames: int = 100
    frame_length: int = 160
    name: ClassVar[str] = "framed"
    chunk_rows: ClassVar[int] = 128  # 8 MiB chunks

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (self.frames, self.frame_length)

    def compute(self, audio: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(N, S) int16 or float32 -> (N, 100, 160) float32."""
        return kernels.frame(audio, self.frames, self.frame_length, out)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class Trimmed:
    """First ``length`` samples: (51200,), dropping the near-silent tail of each note."""

    length: int = 51_200
    name: ClassVar[str] = "trimmed"
    chunk_rows: ClassVar[int] = 32  # 6.25 MiB chunks

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (self.length,)

    def compute(self, audio: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(N, S) int16 or float32 -> (N, 51200) float32."""
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
    """Rebuild a spec from its ``to_dict()`` (as stored in cache attrs)."""
    params = dict(params)
    cls = FEATURES[params.pop("name")]
    return cls(**params)
