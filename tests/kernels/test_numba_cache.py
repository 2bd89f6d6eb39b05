"""Where numba keeps the compiled kernels (``cache=True``): the user's cache folder, never the
package's own folder (site-packages, for an installed nsynth), unless ``NUMBA_CACHE_DIR`` says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nsynth_prep.kernels
from nsynth_prep.kernels import _use_user_cache_dir, numba_cache_dir

KERNELS = Path(nsynth_prep.kernels.__file__).parent
ROOT = KERNELS.parents[1]
# A kernel called once: numba compiles it and writes its cache (index .nbi, code .nbc).
CALL = "import numpy as np; from nsynth_prep.kernels.audio import first_inexact; print(first_inexact(np.zeros(3)))"


def _beside_the_source() -> dict[Path, int]:
    """numba's files in the kernels' folder (its default place), with their modification times."""
    return {p: p.stat().st_mtime_ns for p in KERNELS.rglob("*.nb[ic]")}


def _run(env: dict[str, str]) -> None:
    # PYTHONPATH: this checkout; NUMBA_CACHE_DIR unset (importing the kernels here set it for this process)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")} | env
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", CALL], env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)


@pytest.mark.parametrize("xdg", [True, False], ids=["XDG_CACHE_HOME", "HOME"])
def test_compiled_kernels_go_to_the_user_cache_folder(tmp_path: Path, xdg: bool) -> None:
    """With ``NUMBA_CACHE_DIR`` unset, a kernel's compiled code is written under
    ``$XDG_CACHE_HOME/nsynth/numba`` (or ``~/.cache/nsynth/numba``) and nothing new beside the
    kernels' source; a second process reuses those files instead of writing them again."""
    env = {"HOME": str(tmp_path / "home")} | ({"XDG_CACHE_HOME": str(tmp_path / "xdg")} if xdg else {})
    expected = tmp_path / "xdg" / "nsynth" / "numba" if xdg else tmp_path / "home" / ".cache" / "nsynth" / "numba"
    before = _beside_the_source()
    _run(env)
    written = {p: p.stat().st_mtime_ns for p in expected.rglob("*.nb[ic]")}
    assert any(p.name.startswith("audio.first_inexact") and p.suffix == ".nbi" for p in written), written
    assert all(p.suffix == ".nbc" or p.suffix == ".nbi" for p in written)
    assert _beside_the_source() == before  # nothing new or rewritten next to audio.py
    _run(env)
    assert {p: p.stat().st_mtime_ns for p in expected.rglob("*.nb[ic]")} == written  # reused, not recompiled


def test_cache_folder_follows_xdg_and_respects_the_users_setting(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``XDG_CACHE_HOME`` when absolute, else ``~/.cache``; a ``NUMBA_CACHE_DIR`` the user set is kept."""
    monkeypatch.delitem(sys.modules, "numba.core.config", raising=False)  # leave this process's numba as it is
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert numba_cache_dir() == tmp_path / "xdg" / "nsynth" / "numba"
    for unusable in ("", "relative/cache"):
        monkeypatch.setenv("XDG_CACHE_HOME", unusable)
        assert numba_cache_dir() == tmp_path / ".cache" / "nsynth" / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    _use_user_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    _use_user_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / ".cache" / "nsynth" / "numba")


def test_the_first_build_says_it_compiles_the_kernels_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    from nsynth_prep.builder.pipeline import BuildConfig, build_cache
    from nsynth_prep.corpus.synth import write_corpus
    from nsynth_prep.kernels import first_compile

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    write_corpus(tmp_path / "corpus", {"train": 4, "valid": 2, "test": 2}, progress=False, workers=1)
    said = []
    for out in ("a", "b"):
        caplog.clear()
        with caplog.at_level("INFO"):
            build_cache(tmp_path / "corpus" / "nsynth-valid", tmp_path / out, BuildConfig(features=("pooled",)),
                        progress=False)
        said.append(any("compiling numba kernels, once per install" in r.message for r in caplog.records))
    assert said == [True, False]  # the second build finds the stamp
    assert first_compile() is False
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "other"))
    assert first_compile() is True  # another cache folder: compiled again there
