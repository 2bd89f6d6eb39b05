"""Numerical kernels: pure numba functions over arrays, each beside its plain-numpy reference. Imports nothing of nsynth's.

Importing this package points numba's cache of compiled kernels (``cache=True``) at the user's
cache folder, ``$XDG_CACHE_HOME/nsynth/numba`` (default ``~/.cache/nsynth/numba``), unless
``NUMBA_CACHE_DIR`` is set: numba's default is ``__pycache__`` beside the kernels' source, which
for an installed package means writing into site-packages.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def numba_cache_dir() -> Path:
    """Where nsynth's numba kernels keep their compiled code when ``NUMBA_CACHE_DIR`` is unset:
    ``$XDG_CACHE_HOME/nsynth/numba``, or ``~/.cache/nsynth/numba`` (the XDG base directory
    default, also when ``XDG_CACHE_HOME`` is empty or relative, as the specification says)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "nsynth" / "numba"


def _use_user_cache_dir() -> None:
    """Set ``NUMBA_CACHE_DIR`` unless the user did. numba reads it when ``numba.core.config`` is
    first imported and picks a kernel's cache folder when the kernel is decorated, so this runs
    before the kernel modules import numba; if numba was imported earlier (by the caller), its
    configuration is re-read so that our kernels, decorated after this, still use the folder."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    os.environ["NUMBA_CACHE_DIR"] = str(numba_cache_dir())
    if "numba.core.config" in sys.modules:
        sys.modules["numba.core.config"].reload_config()


def first_compile() -> bool:
    """True the first time it is called for these kernels' sources, numba and Python (then
    remembered by a stamp file in the cache folder): the caller says that the next minute of work
    includes compiling them, which numba does silently. A cache folder that cannot be written
    counts as compiled (numba then compiles every run, and says nothing either)."""
    import numba

    sources = sorted(Path(__file__).parent.glob("*.py"))
    key = hashlib.sha256(b"".join(p.read_bytes() for p in sources) + numba.__version__.encode()
                         + sys.version.encode()).hexdigest()[:16]
    stamp = Path(os.environ.get("NUMBA_CACHE_DIR") or numba_cache_dir()) / f"nsynth-compiled-{key}"
    if stamp.exists():
        return False
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    except OSError:
        return False
    return True


_use_user_cache_dir()
