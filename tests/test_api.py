"""The Python API: every name a package top documents imports from it, and nothing else is promised."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

import nsynth_prep
import nsynth_train


@pytest.mark.parametrize("package", [nsynth_prep, nsynth_train], ids=lambda p: p.__name__)
def test_every_documented_name_imports_from_the_package_top(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    assert len(set(names)) == len(names) and set(names) == set(package._WHERE)  # type: ignore[attr-defined]
    for name in names:
        where = importlib.import_module(f"{package.__name__}.{package._WHERE[name]}")  # type: ignore[attr-defined]
        assert getattr(package, name) is getattr(where, name)
        scope: dict[str, object] = {}
        exec(f"from {package.__name__} import {name}", scope)  # the form users write
        assert scope[name] is getattr(where, name)
    documented = set(re.findall(r":(?:func|class|data):`(\w+)`", package.__doc__ or ""))
    assert documented == set(names), "the package docstring and __all__ disagree"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nsynth_prep.nope  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(ImportError):
        exec("from nsynth_train import nope", {})


def test_importing_the_errors_does_not_load_the_heavy_stack() -> None:
    code = ("import sys, nsynth_prep.errors, nsynth_prep, nsynth_train; "
            "print(sorted(m for m in ('zarr', 'numba', 'torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
