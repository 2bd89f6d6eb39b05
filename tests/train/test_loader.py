"""The loader on int16 audio: every row exactly once per epoch (with and without DataLoader workers,
across chunk groups), each batch the cache's own rows, floats made bit for bit, the same batches
whatever the threads, and threads that end with the epoch."""

from __future__ import annotations

import gc
import os
import pickle
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache import checked
from nsynth_prep.cache.checked import CheckedArray
from nsynth_prep.cache.format import open_cache
from nsynth_prep.errors import CacheError
from nsynth_prep.features import Framed
from nsynth_train.config import TrainConfig
from nsynth_train.data import ChunkStream, batches, loader, to_float
from nsynth_train.splits import DeviceSplit, Split
from nsynth_train.tasks import get_task


@pytest.fixture(scope="module")
def path(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The train split (60 notes) with framed in chunks of 16 rows (4 chunks; the format's 256
    would be one) and trimmed in chunks of 32 (2): readers follow the cache's own chunking."""
    out = tmp_path_factory.mktemp("loader")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Framed, "chunk_rows", 16)
        build_cache(corpus / "nsynth-train", out, BuildConfig(features=("pooled", "framed", "trimmed")), progress=False)
    assert open_cache(out / "train.zarr").meta.features["framed"].chunk_rows == 16
    return out / "train.zarr"


def _whole(path: Path, feature: str) -> tuple[np.ndarray, np.ndarray, float]:
    c = open_cache(path)
    array = CheckedArray(c, feature)
    return array.read_all(), get_task("family").classes_of(c.label("family")), array.scale


@pytest.mark.parametrize("feature", ["framed", "trimmed"])
@pytest.mark.parametrize("workers", [0, 2])
def test_every_row_exactly_once_as_int16(path: Path, feature: str, workers: int) -> None:
    whole, classes, scale = _whole(path, feature)
    want = np.flatnonzero(classes >= 0)
    stream = ChunkStream(path, feature, get_task("family"), batch_size=7, seed=5, buffer_chunks=1)
    assert stream.dtype == np.int16 and stream.scale == scale == 1 / 32768
    orders = []
    for epoch in (0, 1):
        stream.set_epoch(epoch)
        got = list(batches(loader(stream, workers), 7, drop_last=False))
        assert [len(b[1]) for b in got[:-1]] == [7] * (len(got) - 1) and 0 < len(got[-1][1]) <= 7
        rows = torch.cat([b[2] for b in got]).numpy()
        assert sorted(rows) == sorted(want) and len(rows) == len(stream)
        for x, y, r in got:  # each batch is the cache's rows, as stored, and their classes
            assert x.dtype == torch.int16 and x.shape[1:] == whole.shape[1:]
            np.testing.assert_array_equal(x.numpy(), whole[r.numpy()])
            np.testing.assert_array_equal(y.numpy(), classes[r.numpy()])
            floats = to_float(x, stream.scale)
            assert floats.dtype == torch.float32
            assert floats.numpy().tobytes() == (whole[r.numpy()].astype(np.float32) / np.float32(32768)).tobytes()
        orders.append(rows.tolist())
    assert orders[0] != orders[1]  # reshuffled each epoch
    dropped = list(batches(loader(stream, workers), 7, drop_last=True))
    assert all(len(b[1]) == 7 for b in dropped) and sum(len(b[1]) for b in dropped) == len(want) // 7 * 7


def test_the_same_batches_whatever_the_threads(path: Path) -> None:
    def run(**kw: int) -> list[list[int]]:
        stream = ChunkStream(path, "framed", get_task("source"), batch_size=9, seed=2, buffer_chunks=2, **kw)
        stream.set_epoch(3)
        return [b[2].tolist() for b in stream]

    ref = run()
    assert run(threads=1, prefetch=0) == ref and run(threads=3, prefetch=2) == ref
    assert [len(b) for b in ref] == [9] * 6 + [6]  # exact batches across groups, only the last partial


def _readers(until_none: bool = False) -> set[threading.Thread]:
    """The chunk-reader threads alive; with ``until_none``, after waiting (up to 2 s) for them all to
    end (a collected pool wakes its idle threads, which then exit)."""
    for _ in range(200 if until_none else 1):
        gc.collect()
        alive = {t for t in threading.enumerate() if t.name.startswith("chunk-reader")}
        if not alive or not until_none:
            return alive
        time.sleep(0.01)
    return alive


def test_threads_are_kept_across_epochs_and_end_with_the_stream(path: Path) -> None:
    assert _readers(until_none=True) == set()  # the streams of earlier tests are gone
    stream = ChunkStream(path, "trimmed", get_task("family"), batch_size=4, buffer_chunks=1, threads=2)
    it = iter(stream)
    next(it)
    it.close()  # the consumer stops early (an exception in the step, a break): no read left in flight
    assert sum(len(b[1]) for b in stream) == len(stream)  # the next epoch is whole
    kept = _readers()
    assert 1 <= len(kept) <= 2
    assert sum(len(b[1]) for b in stream) == len(stream) and _readers() == kept  # the same threads
    stream.close()
    assert _readers() == set()
    stream = ChunkStream(path, "trimmed", get_task("family"), batch_size=4, buffer_chunks=1, threads=2)
    list(stream)
    del stream
    assert _readers(until_none=True) == set()


def test_a_mapped_chunk_is_checked_once_and_again_when_its_file_changes(path: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "train.zarr"
    shutil.copytree(path, copy)
    calls: list[int] = []
    real = checked.checksum
    monkeypatch.setattr(checked, "checksum", lambda data: calls.append(len(data)) or real(data))
    stream = ChunkStream(copy, "framed", get_task("family"), batch_size=8, buffer_chunks=2)
    assert sum(len(b[1]) for b in stream) == len(stream) and len(calls) == 4  # every chunk, first epoch
    stream.set_epoch(1)
    assert sum(len(b[1]) for b in stream) == len(stream) and len(calls) == 4  # the same files: not again
    chunk = copy / "framed" / "c" / "1" / "0" / "0"
    with chunk.open("r+b") as f:  # damaged in place while training: the same inode, a new mtime
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    st = chunk.stat()  # a write within the file system's timestamp tick keeps the mtime: move it on
    os.utime(chunk, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    stream.set_epoch(2)
    with pytest.raises(CacheError, match=r"framed: chunk 1 \(rows 16\.\.31, file framed/c/1/0/0\) differs from the checksum"):
        list(stream)


def test_a_worker_forked_after_an_epoch_in_process_reads_everything(path: Path) -> None:
    stream = ChunkStream(path, "framed", get_task("family"), batch_size=5, buffer_chunks=1)
    list(stream)  # the parent's pool, maps and passed checks exist now; pickled or forked, they are not used
    assert pickle.loads(pickle.dumps(stream))._pool is None
    rows = torch.cat([b[2] for b in batches(loader(stream, 2), 5, drop_last=False)])
    assert sorted(rows.tolist()) == sorted(np.flatnonzero(stream.classes >= 0).tolist())


def test_resident_split_holds_int16_and_gives_float32(path: Path) -> None:
    whole, _, scale = _whole(path, "framed")
    resident = DeviceSplit(path, "framed", get_task("family"), torch.device("cpu"))
    assert resident.x.dtype == torch.int16 and resident.scale == scale
    for x, _, r in resident.batches(8, shuffle=True, seed=0, epoch=1, drop_last=False):
        assert x.dtype == torch.float32
        assert x.numpy().tobytes() == (whole[r.numpy()].astype(np.float32) * np.float32(scale)).tobytes()


@pytest.mark.parametrize("model", ["lstm", "cnn"])
def test_streamed_and_resident_splits_give_the_loop_the_same_floats(path: Path, model: str) -> None:
    config = TrainConfig(model=model, cache_dir=str(path.parent), batch_size=16, device="cpu").resolved()
    got = {}
    for resident in ("yes", "no"):
        from dataclasses import replace

        split = Split(path, replace(config, resident=resident), get_task("family"), torch.device("cpu"), shuffle=False)
        assert split.resident == (resident == "yes")
        xs, rows = zip(*[(x, r) for x, _, r in split.batches(0, drop_last=False)], strict=True)
        assert all(x.dtype == torch.float32 for x in xs)
        order = torch.cat(rows).argsort()
        got[resident] = torch.cat(xs)[order]
    assert torch.equal(got["yes"], got["no"])
