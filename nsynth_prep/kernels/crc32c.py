"""CRC-32C, chosen once for the whole package: libcrc32c, else google-crc32c, else our numba kernel.

Every checksum nsynth computes (TFRecord framing, cache chunks, source fingerprints) comes from
here; all three implementations give the same values (the standard check value is tested).

google-crc32c (a zarr dependency) computes CRC-32C with SSE4.2 at 16-27 GB/s here, but its
Python ``value()`` releases the GIL only for ``bytes`` of 1 MiB or more (its C source says so:
other buffers could change under it): for an array, every other thread waits the whole call
(a 4096-row shuffle took 0.49 ms instead of 0.03 ms beside a thread checksumming chunks). Its
wheels ship the C library itself (``libcrc32c``), whose ``crc32c_value(data, size)`` ctypes
calls with the GIL released. That library is used when it is found and gives the known check
value; otherwise ``value()`` (GIL held) or, without the C build, the numba kernel (same values).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nsynth_prep.kernels.protobuf import crc32c as crc32c_kernel

log = logging.getLogger(__name__)

CHECK = (b"123456789", 0xE3069283)  # the standard CRC-32C check value


def _library() -> Callable[[int, int], int] | None:
    """``crc32c_value(address, size)`` of google-crc32c's C library, or None."""
    try:
        import google_crc32c
    except ImportError:
        return None
    package = Path(google_crc32c.__file__).parent
    candidates = [*sorted((package.parent / "google_crc32c.libs").glob("libcrc32c*")),  # manylinux wheels
                  *sorted((package / ".dylibs").glob("libcrc32c*")),  # macOS wheels
                  *filter(None, [ctypes.util.find_library("crc32c")])]  # a system build
    for candidate in candidates:
        try:
            fn = ctypes.CDLL(str(candidate)).crc32c_value
        except (OSError, AttributeError):
            continue
        fn.restype, fn.argtypes = ctypes.c_uint32, [ctypes.c_void_p, ctypes.c_size_t]
        data = ctypes.create_string_buffer(CHECK[0], len(CHECK[0]))
        if fn(ctypes.addressof(data), len(CHECK[0])) == CHECK[1]:
            return fn  # type: ignore[no-any-return]
    log.debug("libcrc32c not found: chunk checksums hold the GIL")
    return None


_C_VALUE = _library()

try:  # zarr already depends on google-crc32c; its C build (SSE4.2) is ~7x our numba kernel
    import google_crc32c

    _C_BYTES = google_crc32c.value if google_crc32c.implementation == "c" else None
except ImportError:  # pragma: no cover - zarr installs it
    _C_BYTES = None


def payload_crc(data: bytes) -> int:
    """CRC-32C of ``data``: google-crc32c's C build when present, else the numba kernel."""
    return _C_BYTES(data) if _C_BYTES is not None else crc32c_kernel(np.frombuffer(data, np.uint8))


def crc32c(data: np.ndarray) -> int:
    """CRC-32C of an array's C-order bytes (no copy when it is C-contiguous)."""
    data = np.ascontiguousarray(data)
    if _C_VALUE is not None:
        return _C_VALUE(data.ctypes.data, data.nbytes)  # ctypes releases the GIL for the call
    view = data.view()
    view.flags.writeable = False  # google-crc32c takes read-only buffers only; no copy is made
    return payload_crc(view)  # type: ignore[arg-type]
