"""Damaged caches: training, evaluation, export and audit check what they read; verify lists every
problem; unreadable metadata, full or read-only disks and empty splits end in one clear line."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import zarr
from click.testing import Result

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache import format as cache
from nsynth_prep.cache.verify import verify_cache
from nsynth_prep.errors import CacheError, SourceError, StorageError
from nsynth_prep.tools.audit import audit
from nsynth_prep.tools.export import export_hdf5
from nsynth_prep.tools.inspect import describe
from nsynth_train.data import ChunkStream, batches, loader
from nsynth_train.splits import DeviceSplit
from nsynth_train.tasks import get_task


@pytest.fixture
def sound(run_caches: Path) -> Path:
    """A sound train cache: 60 notes, pooled (one chunk) and trimmed (two chunks of 32 rows); the
    session's, read-only: every test damages a copy (``_copy``)."""
    return run_caches / "train.zarr"


def _copy(sound: Path, tmp_path: Path) -> Path:
    shutil.copytree(sound, tmp_path / "train.zarr")
    return tmp_path / "train.zarr"


def _damage(path: Path, kind: str, name: str = "trimmed", chunk: int = 1) -> None:
    """Damage chunk ``chunk`` of array ``name`` the ways a disk, a user or a tool does."""
    arr = zarr.open_group(path, mode="r+")[name]
    assert isinstance(arr, zarr.Array)
    chunk_file = cache.chunk_file(path, name, arr, chunk)
    if kind == "deleted":
        chunk_file.unlink()
    elif kind == "garbage":  # will not decompress
        chunk_file.write_bytes(b"not a blosc chunk" * 40)
    elif kind == "rewritten":  # decodes fine, to other numbers
        arr[chunk * arr.chunks[0] + 2, 7] = 1234 if arr.dtype == "int16" else 0.123
    elif kind == "bitflip":
        data = bytearray(chunk_file.read_bytes())
        data[len(data) // 2] ^= 0x10
        chunk_file.write_bytes(bytes(data))


def _stream(path: Path, feature: str = "trimmed", check: bool = True) -> ChunkStream:
    return ChunkStream(path, feature, get_task("family"), batch_size=16, shuffle=False, check=check)


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "nsynth prep verify" in text, text
    return text


# --- checked reads ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "message"), [
    ("deleted", r"trimmed: chunk 1 \(rows 32\.\.59, file trimmed/c/1/0\) differs from the checksum recorded at "
                r"build time \(the file is missing, so zarr reads it as zeros\)"),
    ("rewritten", r"trimmed: chunk 1 \(rows 32\.\.59, file trimmed/c/1/0\) differs from the checksum recorded at "
                  r"build time"),
    ("garbage", r"trimmed: chunk 1 \(rows 32\.\.59, file trimmed/c/1/0\) cannot be read \(ValueError: the chunk "
                r"file decodes to \d+ bytes, not the chunk's 3276800\)"),
    ("bitflip", r"trimmed: chunk 1 \(rows 32\.\.59.*(cannot be read|differs from the checksum)"),
])
def test_stream_and_resident_split_stop_on_a_damaged_chunk(sound: Path, tmp_path: Path, kind: str,
                                                          message: str) -> None:
    path = _copy(sound, tmp_path)
    _damage(path, kind)
    with pytest.raises(CacheError, match=message) as info:
        list(batches(_stream(path), 16, False))
    assert str(path) in _one_line(info)
    with pytest.raises(CacheError, match=message) as info:
        DeviceSplit(path, "trimmed", get_task("family"), __import__("torch").device("cpu"))
    _one_line(info)
    if kind in ("deleted", "rewritten"):  # what training read before the check: wrong numbers, silently
        unchecked = _stream(path, check=False)
        assert sum(len(b[1]) for b in batches(unchecked, 16, False)) == len(unchecked)


def test_labels_are_checked_on_open(sound: Path, tmp_path: Path) -> None:
    path = _copy(sound, tmp_path)
    (path / "family" / "c" / "0").unlink()  # every family would read as 0 (bass)
    with pytest.raises(CacheError, match=r"family: differs from the checksum recorded at build time \(chunk file "
                                         r"family/c/0 is missing\)") as info:
        _stream(path, "pooled")
    _one_line(info)
    with pytest.raises(CacheError, match="family: differs"):
        DeviceSplit(path, "pooled", get_task("family"), __import__("torch").device("cpu"))
    path2 = _copy(sound, tmp_path / "b")
    source = zarr.open_group(path2, mode="r+")["source"]
    source[3] = (int(source[3]) + 1) % 3  # one label changed in place
    with pytest.raises(CacheError, match="source: differs"):
        ChunkStream(path2, "pooled", get_task("source"), batch_size=8)


def test_worker_errors_come_back_as_one_line(sound: Path, tmp_path: Path) -> None:
    path = _copy(sound, tmp_path)
    _damage(path, "deleted", "trimmed", 0)
    with pytest.raises(CacheError, match=r"trimmed: chunk 0 \(rows 0\.\.31, file trimmed/c/0/0\) differs") as info:
        list(batches(loader(_stream(path), num_workers=1), 16, False))
    assert "Traceback" not in _one_line(info)


def test_export_and_audit_check_what_they_read(sound: Path, tmp_path: Path) -> None:
    path = _copy(sound, tmp_path)
    _damage(path, "rewritten", "pooled", 0)
    with pytest.raises(CacheError, match=r"pooled: chunk 0 \(rows 0\.\.59, file pooled/c/0/0\) differs"):
        export_hdf5(path, tmp_path / "x.h5")
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(CacheError, match="pooled: chunk 0"):
        audit([path])


def test_train_stops_on_a_chunk_that_will_not_decompress(run_caches: Path, tmp_path: Path,
                                                          cli: Callable[..., Result]) -> None:
    shutil.copytree(run_caches, tmp_path / "c")  # the session's (read-only) caches, to damage
    _damage(tmp_path / "c" / "train.zarr", "garbage", "pooled", 0)
    result = cli("-q", "train", "--model", "cnn", "--cache", str(tmp_path / "c"), "--epochs", "1", "--batch-size", "16",
                 "--resident", "no", "--out", str(tmp_path / "run"))
    assert result.exit_code == 1, result.stderr
    # One error line (the small-corpus warning, a log record, goes to pytest's log capture here);
    # cli raises what would be a traceback.
    assert len(result.stderr.strip().splitlines()) == 1
    assert "train.zarr: pooled: chunk 0 (rows 0..59, file pooled/c/0/0) cannot be read" in result.stderr


# --- verify and damaged metadata ---------------------------------------------------------------


def _edit_json(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_verify_lists_every_problem_without_crashing(sound: Path, tmp_path: Path, cli: Callable[..., Result]) -> None:
    path = _copy(sound, tmp_path)
    _damage(path, "garbage", "trimmed", 0)
    _damage(path, "deleted", "trimmed", 1)
    _edit_json(path / "pooled" / "zarr.json", lambda d: d.update(data_type="float64"))
    (path / "pitch" / "zarr.json").write_text("{not json")
    (path / "family" / "c" / "0").unlink()
    problems = verify_cache(path)
    expected = [
        r"^pitch/zarr\.json cannot be read \(JSONDecodeError",
        r"^family: checksum differs from the one recorded at build time \(chunk file family/c/0 is missing\)",
        r"^feature pooled/zarr\.json: dtype float64, expected float32",
        r"^trimmed: chunk 0 \(rows 0\.\.31, file trimmed/c/0/0\) cannot be read \(ValueError: the chunk file "
        r"decodes to",
        r"^trimmed: chunk 1 \(rows 32\.\.59, file trimmed/c/1/0\) differs from the checksum recorded at build time "
        r"\(the file is missing",
    ]
    for pattern in expected:
        assert any(re.search(pattern, p) for p in problems), (pattern, problems)
    assert len(problems) == len(expected), problems
    result = cli("prep", "verify", str(path))  # (raises what would be a traceback)
    assert result.exit_code == 1 and "5 problem(s)" in result.stdout


def test_edited_dtype_is_refused_on_open(sound: Path, tmp_path: Path) -> None:
    path = _copy(sound, tmp_path)
    _edit_json(path / "pooled" / "zarr.json", lambda d: d.update(data_type="float64"))
    with pytest.raises(CacheError, match=r"pooled/zarr\.json: dtype float64, expected float32"):
        _stream(path, "pooled")
    _edit_json(path / "family" / "zarr.json", lambda d: d.update(data_type="int16"))
    with pytest.raises(CacheError, match=r"family/zarr\.json: dtype int16, expected int8"):
        describe(path)
    (path / "source" / "zarr.json").write_text("{not json")
    with pytest.raises(CacheError, match=r"train\.zarr: source/zarr\.json cannot be read \(JSONDecodeError"):
        ChunkStream(path, "trimmed", get_task("source"), batch_size=8)


@pytest.mark.parametrize("text", ["{not json", "", '{"zarr_format": 3, "node_type": "array"}'])
def test_unreadable_group_zarr_json_is_named(sound: Path, tmp_path: Path, corpus: Path, text: str) -> None:
    path = _copy(sound, tmp_path)
    (path / "zarr.json").write_text(text)
    for problem in (verify_cache(path), ):
        assert len(problem) == 1 and f"{path}/zarr.json: not a readable zarr group" in problem[0]
    with pytest.raises(CacheError, match=r"train\.zarr/zarr\.json: not a readable zarr group"):
        cache.open_cache(path)
    with pytest.raises(CacheError, match=r"train\.zarr/zarr\.json: not a readable zarr group"):
        build_cache(corpus / "nsynth-train", tmp_path, BuildConfig(), progress=False)  # never overwritten


def test_incomplete_attrs_of_a_complete_cache_are_named(sound: Path, tmp_path: Path, corpus: Path,
                                                        edit_attrs: Callable[..., None]) -> None:
    path = _copy(sound, tmp_path)
    edit_attrs(path, label_checksums={})
    message = r"train\.zarr: zarr\.json: attrs\['nsynth'\] label_checksums has \[\], expected \['family', "
    with pytest.raises(CacheError, match=message) as info:
        cache.open_cache(path)
    _one_line(info)
    assert re.search(message, verify_cache(path)[0])
    with pytest.raises(CacheError, match=message):  # a complete cache is never rebuilt over
        build_cache(corpus / "nsynth-train", tmp_path, BuildConfig(), progress=False)


# --- full and read-only disks ------------------------------------------------------------------


def _refuse_writes(monkeypatch: pytest.MonkeyPatch, code: int, where: str, after: int = 0) -> None:
    """Make zarr's local store fail with ``code`` for keys containing ``where`` (after ``after`` writes)."""
    from zarr.storage import _local

    original, seen = _local._put, []

    def put(path: Path, value, exclusive: bool = False) -> int:  # type: ignore[no-untyped-def]
        if where in str(path):
            seen.append(path)
            if len(seen) > after:
                raise OSError(code, os.strerror(code), str(path))
        return original(path, value, exclusive=exclusive)

    monkeypatch.setattr(_local, "_put", put)


@pytest.mark.parametrize(("workers", "after"), [(1, 1), (2, 0)])  # forked workers count their own writes
def test_disk_full_while_writing_chunks_then_resume(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    workers: int, after: int) -> None:
    config = BuildConfig(features=("trimmed",), workers=workers)
    _refuse_writes(monkeypatch, errno.ENOSPC, "/trimmed/c/", after=after)
    with pytest.raises(StorageError, match=r"train\.zarr/trimmed/c/\d/0: cannot write \(disk full\)") as info:
        build_cache(corpus / "nsynth-train", tmp_path, config, progress=False)
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    done = build_cache(corpus / "nsynth-train", tmp_path, config, progress=False)[0]
    assert done.notes == 60 and verify_cache(done.path) == []


def test_disk_full_at_a_done_mark(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nsynth_prep.storage import store

    original = store.write_atomic

    def full(path: Path, data: bytes) -> None:
        if "done" in Path(str(path)).parts:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        original(path, data)

    monkeypatch.setattr(store, "write_atomic", full)  # the done marks' writer (builder.blocks.mark_done)
    with pytest.raises(StorageError, match=r"train\.zarr\.build/done/pooled/0\.json: cannot write \(disk full\)"):
        build_cache(corpus / "nsynth-train", tmp_path, BuildConfig(workers=1), progress=False)


def test_read_only_cache_folder(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_writes(monkeypatch, errno.EROFS, "train.zarr")
    with pytest.raises(StorageError, match=r"train\.zarr/zarr\.json: cannot write \(read-only file system\)"):
        build_cache(corpus / "nsynth-train", tmp_path, BuildConfig(), progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through a 0o500 folder")
def test_read_only_cache_folder_for_real(corpus: Path, tmp_path: Path) -> None:  # pragma: no cover - not as root
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        with pytest.raises(StorageError, match="permission denied"):
            build_cache(corpus / "nsynth-train", tmp_path / "ro", BuildConfig(), progress=False)
    finally:
        (tmp_path / "ro").chmod(0o700)


# --- empty splits -------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_empty_split_is_an_error_unless_asked_for(tmp_path: Path, workers: int) -> None:
    garbage = tmp_path / "nsynth-test.tfrecord"
    garbage.write_bytes(b"this is not a tfrecord" * 50)
    with pytest.raises(SourceError, match=r"record 0 at byte 0: length CRC mismatch"):
        build_cache(garbage, tmp_path / "c", BuildConfig(workers=workers), progress=False)
    with pytest.raises(SourceError, match=r"nsynth-test\.tfrecord: no notes to build \(0 read, 1 skipped, e\.g\. "
                                          r"rest of file: .*; pass --allow-empty to write an empty cache"):
        build_cache(garbage, tmp_path / "c", BuildConfig(workers=workers, on_error="skip"), progress=False)
    assert not (tmp_path / "c" / "test.zarr").exists() and not (tmp_path / "c" / "test.zarr.build").exists()
    empty = tmp_path / "e" / "nsynth-test.tfrecord"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"no notes to build \(0 read, 0 skipped"):
        build_cache(empty, tmp_path / "c", BuildConfig(workers=workers), progress=False)
    s = build_cache(empty, tmp_path / "c", BuildConfig(workers=workers, allow_empty=True), progress=False)[0]
    assert s.notes == 0 and verify_cache(s.path) == []
    assert cache.open_cache(s.path).meta.build.allow_empty is True
    assert build_cache(empty, tmp_path / "c", BuildConfig(workers=workers), progress=False)[0].built_now == []


def test_families_that_leave_nothing(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no notes to build \(30 read, 0 skipped, 30 left out by --families"):
        build_cache(corpus / "nsynth-valid", tmp_path, BuildConfig(families=("synth_lead",)), progress=False)
