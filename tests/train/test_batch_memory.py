"""The stream's batch buffers are reused once the consumer lets go of a batch, and never while
anything holds it: the consumer, a list of batches, autograd's saved input, a DataLoader worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from nsynth_prep.cache.checked import CheckedArray
from nsynth_prep.cache.format import open_cache
from nsynth_train.batching import BatchMemory
from nsynth_train.data import ChunkStream, batches, loader
from nsynth_train.tasks import get_task


@pytest.fixture(scope="module")
def pooled(train_in_chunks_of: Callable[..., Path]) -> Path:
    """The train split (60 notes) with pooled in chunks of 8 rows: 8 chunks, batches of 5 rows."""
    return train_in_chunks_of(pooled=8)


def whole(path: Path) -> np.ndarray:
    return CheckedArray(open_cache(path), "pooled").read_all()


def stream(path: Path) -> ChunkStream:
    return ChunkStream(path, "pooled", get_task("source"), batch_size=5, seed=1, buffer_chunks=2)


def test_a_dropped_batch_is_reused_and_every_batch_is_right_when_it_arrives(pooled: Path) -> None:
    data, s = whole(pooled), stream(pooled)
    seen, count = set(), 0
    for epoch in range(3):
        s.set_epoch(epoch)
        for x, _, rows in batches(loader(s), 5, drop_last=False):  # each dropped at the next
            np.testing.assert_array_equal(x.numpy(), data[rows.numpy()])
            seen.add(x.data_ptr())
            count += 1
    # the one being consumed, the one being gathered, and the builder's next: a few sets in all
    assert count == 3 * 12 and len(seen) <= BatchMemory().keep


def test_held_batches_are_never_written_again(pooled: Path) -> None:
    data, s = whole(pooled), stream(pooled)
    held = []
    for epoch in range(2):
        s.set_epoch(epoch)
        held += list(batches(loader(s), 5, drop_last=False))
    assert len({x.data_ptr() for x, _, _ in held}) == len(held)
    classes = get_task("source").classes_of(open_cache(pooled).label("source"))
    for x, y, rows in held:  # still what they were when they arrived
        np.testing.assert_array_equal(x.numpy(), data[rows.numpy()])
        np.testing.assert_array_equal(y.numpy(), classes[rows.numpy()])


def test_a_batch_autograd_saved_is_not_reused_before_backward(pooled: Path) -> None:
    s = stream(pooled)
    weight = torch.ones(2048, requires_grad=True)
    graphs, sums = [], []
    for x, _, _ in batches(loader(s), 5, drop_last=False):
        graphs.append((x * weight).sum())  # float32 pooled goes in as it is: autograd saves the batch itself
        sums.append(x.sum(0).clone())
        del x  # only the graph holds the batch now
    for loss, expected in zip(graphs, sums, strict=True):
        weight.grad = None
        loss.backward()
        assert weight.grad is not None
        torch.testing.assert_close(weight.grad, expected, rtol=0, atol=0)


def test_with_dataloader_workers_every_batch_is_right(pooled: Path) -> None:
    data, s = whole(pooled), stream(pooled)
    rows_seen = []
    for x, _, rows in batches(loader(s, num_workers=2), 5, drop_last=False):
        np.testing.assert_array_equal(x.numpy(), data[rows.numpy()])
        rows_seen += rows.tolist()
    assert sorted(rows_seen) == sorted(np.flatnonzero(get_task("source").classes_of(
        open_cache(pooled).label("source")) >= 0).tolist())


def test_memory_keeps_at_most_its_sets_and_matches_shapes() -> None:
    memory = BatchMemory(keep=2)
    a = memory.get(4, (3,), np.dtype(np.float32))
    b = memory.get(4, (3,), np.dtype(np.float32))
    c = memory.get(4, (3,), np.dtype(np.float32))  # both kept sets are held: new memory, not kept
    assert len(memory.sets) == 2 and c[0] is not a[0] and c[0] is not b[0]
    del a
    again = memory.get(4, (3,), np.dtype(np.float32))
    assert again[0] is memory.sets[0][0]  # the first set, let go of, is reused
    other = memory.get(4, (5,), np.dtype(np.float32))  # another shape never takes a kept set
    assert other[0].shape == (4, 5) and all(other[0] is not kept[0] for kept in memory.sets)


def test_memory_pickles_empty_with_a_lock_of_its_own() -> None:
    """What a DataLoader worker gets with the stream: the same limit, nothing kept."""
    import pickle

    memory = BatchMemory(keep=3)
    memory.get(4, (3,), np.dtype(np.float32))
    copy = pickle.loads(pickle.dumps(memory))
    assert copy.keep == 3 and copy.sets == [] and copy._lock is not memory._lock
    assert copy.get(4, (3,), np.dtype(np.float32))[0].shape == (4, 3)
