"""The import structure the layout promises, read from the code (nothing is imported or run):
kernels import nothing of ours, training never imports the corpus makers, prep never imports
training, matplotlib only in display/, and no module imports itself through a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nsynth_prep", "nsynth_train")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module (ours or not) that ``path`` imports anywhere in its body, lazily or not,
    outside ``if TYPE_CHECKING:`` blocks; ``from package import module`` counts as the module."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import of {node.module}; nsynth imports are absolute"
            submodules = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            if node.module not in PACKAGES or len(submodules) < len(node.names):  # a name from a package top
                found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def test_kernels_import_nothing_of_ours() -> None:
    for name, imports in _graph().items():
        if name.startswith("nsynth_prep.kernels."):
            ours = {m for m in imports if m.startswith(PACKAGES) and not m.startswith("nsynth_prep.kernels")}
            assert not ours, f"{name} imports {sorted(ours)}"


def test_training_never_imports_the_corpus_makers_and_prep_never_imports_training() -> None:
    for name, imports in _graph().items():
        if name.startswith("nsynth_train"):
            assert not {m for m in imports if m.startswith("nsynth_prep.corpus")}, name
        if name.startswith("nsynth_prep"):
            assert not {m for m in imports if m.startswith("nsynth_train")}, name


def test_only_display_imports_matplotlib() -> None:
    """Figures are drawn in one place (like librosa.display): the rest of nsynth, the CLI
    included, stays importable and testable without matplotlib."""
    graph = {**_graph(), "cli": _imports(ROOT / "cli.py", _modules())}
    for name, imports in graph.items():
        if not name.startswith("nsynth_prep.display"):
            drawing = {m for m in imports if m == "matplotlib" or m.startswith("matplotlib.")}
            assert not drawing, f"{name} imports {sorted(drawing)}: draw in nsynth_prep/display/"


def test_modules_import_modules_not_the_package_tops() -> None:
    """The package tops hand names to users lazily; a module importing them could close a circle."""
    for name, imports in _graph().items():
        assert not set(imports) & set(PACKAGES), f"{name} imports a package top: use the defining module"


def test_no_import_circle() -> None:
    graph = {name: {m for m in imports if m in _modules() and not m.endswith(PACKAGES)} for name, imports in _graph().items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_prep_top_level_holds_at_most_8_files() -> None:
    files = sorted(p.name for p in (ROOT / "nsynth_prep").glob("*.py"))
    assert len(files) <= 8, files
