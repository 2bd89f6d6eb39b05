"""audit in several processes: the same report as in one, findings in every chunk merged in chunk
order, a damaged chunk still stops it with one line, and its progress bar counts every chunk."""

from __future__ import annotations

from pathlib import Path

import pytest
from hand_corpus import write_hand_corpus

from nsynth_prep import progress
from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.errors import CacheError
from nsynth_prep.tools.audit import audit


@pytest.fixture(scope="module")
def noisy_train(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A 72-note train cache (trimmed: 3 chunks of 32 rows) with white noise planted at the first,
    a middle and the last note written, so there are findings in more than one chunk."""
    names = write_hand_corpus(tmp_path_factory.mktemp("names"))["train"]
    planted = [names[0], names[len(names) // 2], names[-1]]
    out = tmp_path_factory.mktemp("noisy")
    write_hand_corpus(out, {"train": planted})
    build_cache(out / "nsynth-train", out / "cache", BuildConfig(features=("pooled", "framed", "trimmed")),
                progress=False)
    return out / "cache" / "train.zarr", planted


def test_any_number_of_workers_gives_the_same_report(noisy_train: tuple[Path, list[str]]) -> None:
    path, planted = noisy_train
    one = audit([path]).to_dict()
    found = one["caches"][0]["noise_like"]
    assert sorted(n["note"] for n in found) == sorted(planted)
    assert len({n["row"] // 32 for n in found}) >= 2  # findings in several trimmed chunks
    assert [n["row"] for n in found] == sorted(n["row"] for n in found)  # in row order
    assert one["caches"][0]["flattest"]["note"] in planted
    for workers in (2, 3, 8):  # 8: more processes than the 5 chunks (pooled 1, framed 1, trimmed 3)
        assert audit([path], workers=workers).to_dict() == one


def test_a_damaged_chunk_stops_a_parallel_audit_with_one_line(noisy_train: tuple[Path, list[str]],
                                                               tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "train.zarr"
    shutil.copytree(noisy_train[0], path)
    chunk = path / "trimmed" / "c" / "1" / "0"
    chunk.write_bytes(bytes(len(chunk.read_bytes())))  # zeros in place of trimmed's second chunk
    with pytest.raises(CacheError, match=r"trimmed: chunk 1 \(rows 32\.\.63, file trimmed/c/1/0"):
        audit([path], workers=2)


def test_the_progress_bar_counts_every_chunk(noisy_train: tuple[Path, list[str]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    bars: list[tuple[int, str, str | None, list[int]]] = []

    class Recorded(progress.Progress):
        def __init__(self, total: int, desc: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(total, desc, **kwargs)
            bars.append((total, desc, kwargs.get("unit"), []))

        def update(self, n: int = 1) -> None:
            bars[-1][3].append(n)
            super().update(n)

    monkeypatch.setattr("nsynth_prep.tools.audit.Progress", Recorded)
    audit([noisy_train[0]], workers=2, progress=False)
    ((total, desc, unit, counted),) = bars
    assert (total, desc, unit, sum(counted)) == (5, "audit train", "chunks", 5)
