"""A split as the training loop sees it: float32 batches on the device, streamed or resident.

:class:`Split` chooses between the two modes (``--resident auto``: resident when the feature, as
stored, fits in 40 % of the GPU's free memory or 2 GiB on the CPU; one choice for every rank
under torchrun) and makes int16 audio float32 on the device. Streamed, it is a
:class:`.data.ChunkStream` through :func:`.data.loader`; resident, a :class:`DeviceSplit`: the
whole split loaded once into (GPU) memory, int16 audio kept int16 there, indexed per batch, every
chunk checked against its build-time checksum as it is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from nsynth_prep.cache import format as cache_format
from nsynth_prep.cache.checked import CheckedArray
from nsynth_prep.storage.store import Where
from nsynth_train.batching import Batch
from nsynth_train.config import TrainConfig
from nsynth_train.data import ChunkStream, batches, loader, to_float
from nsynth_train.recipe import balanced_counts
from nsynth_train.tasks import Task


class DeviceSplit:
    """A whole split's feature and classes held in tensors on ``device``; batches by indexing.

    int16 audio stays int16 on the device (half of float32's memory: NSynth train's ``framed``
    is 9 GB, its ``trimmed`` 29 GB) and each batch is made float32 there.
    """

    def __init__(self, path: Where, feature: str, task: Task, device: torch.device, balanced: bool = False) -> None:
        c = cache_format.open_cache(path, (feature,))
        classes = task.classes_of(c.label(task.column))
        self.balanced = balanced  # class-balanced draw when shuffling (see ChunkStream)
        self.classes = classes[classes >= 0]
        array = CheckedArray(c, feature)
        self.scale = array.scale
        self.rows = torch.from_numpy(np.flatnonzero(classes >= 0)).to(device)
        data = array.read_all()[classes >= 0]  # every chunk checked
        self.x = torch.from_numpy(data).to(device)
        self.y = torch.from_numpy(classes[classes >= 0]).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.y)

    def shares(self, world: int) -> list[int]:
        """Rows each of ``world`` ranks takes in an epoch (``rank::world`` of the order)."""
        return [len(range(r, len(self.y), world)) for r in range(world)]

    def batches(self, batch_size: int, shuffle: bool, seed: int, epoch: int, drop_last: bool,
                rank: int = 0, world: int = 1) -> Iterator[Batch]:
        """Batches of the rows in this epoch's order; rank ``rank`` of ``world`` takes every
        ``world``-th of them (every rank holds the whole split and draws the same permutation, so the
        shares are disjoint and reshuffled across ranks each epoch)."""
        n = len(self.y)
        if shuffle:
            gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = torch.randperm(n, generator=gen)
            if self.balanced:  # n draws in all: the permutation orders each row's copies
                order = torch.from_numpy(np.repeat(np.arange(n), balanced_counts(self.classes, seed, epoch)))[order]
            order = order.to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        order = order[rank::world]
        n = len(order)
        stop = n - n % batch_size if drop_last else n
        for b in range(0, stop, batch_size):
            idx = order[b : b + batch_size]
            yield to_float(self.x[idx], self.scale), self.y[idx], self.rows[idx]


class Split:
    """One split as the loop sees it: float32 batches on the device, streamed or resident."""

    def __init__(self, path: Where, config: TrainConfig, task: Task, device: torch.device, shuffle: bool,
                 shard: tuple[int, int] = (0, 1), threads: int | None = None) -> None:
        """``shard``: (rank, world), this process's share under torchrun; ``threads``: chunk
        readers (default: the stream's)."""
        self.path, self.config, self.shuffle, self.device = path, config, shuffle, device
        self.rank, self.world = shard
        c = cache_format.open_cache(path, (config.feature,))
        nbytes = c.array(config.feature).nbytes  # as stored: int16 audio counts 2 bytes a sample
        limit = (torch.cuda.mem_get_info(device)[0] * 0.4 if device.type == "cuda" else 2 << 30)
        self.resident = config.resident == "yes" or (config.resident == "auto" and nbytes <= limit)
        if self.world > 1 and config.resident == "auto":
            # One choice for all ranks (the GPUs' free memory may differ): a resident rank shares
            # out notes and a streaming one chunks, so mixed choices would overlap and leave gaps.
            vote = torch.tensor([int(self.resident)], device=device if device.type == "cuda" else "cpu")
            torch.distributed.all_reduce(vote, op=torch.distributed.ReduceOp.MIN)
            self.resident = bool(vote.item())
        assert config.batch_size is not None
        balanced = shuffle and config.balance == "sample"  # the train split's epochs only
        if self.resident:
            self.data: DeviceSplit | ChunkStream = DeviceSplit(path, config.feature, task, device, balanced)
        else:
            self.data = ChunkStream(path, config.feature, task, config.batch_size, shuffle, config.seed,
                                    config.buffer_chunks, threads=threads, balanced=balanced)
            self.data.shard(self.rank, self.world)
            self.loader = loader(self.data, config.num_workers, pin_memory=device.type == "cuda")

    def __len__(self) -> int:
        """Notes of the whole split (all ranks)."""
        return len(self.data)

    def shares(self, epoch: int) -> list[int]:
        """(world,) notes each rank takes in ``epoch``; they sum to ``len(self)``."""
        if isinstance(self.data, DeviceSplit):
            return self.data.shares(self.world)
        self.data.set_epoch(epoch)
        return self.data.shares()

    def blank(self) -> Batch:
        """A one-row batch of zeros (float32 features on the device, class 0, cache row 0): what a
        rank with no notes in an epoch pads its steps with under torchrun."""
        shape = tuple(self.data.x.shape[1:]) if isinstance(self.data, DeviceSplit) else self.data.row_shape
        return (torch.zeros((1, *shape), device=self.device), torch.zeros(1, dtype=torch.int64, device=self.device),
                torch.zeros(1, dtype=torch.int64))

    def batches(self, epoch: int, drop_last: bool) -> Iterator[Batch]:
        """This rank's batches of ``epoch``: (B, ...) float32 features, (B,) classes on the device,
        (B,) cache rows."""
        assert self.config.batch_size is not None
        if isinstance(self.data, DeviceSplit):
            yield from self.data.batches(self.config.batch_size, self.shuffle, self.config.seed, epoch, drop_last,
                                         self.rank, self.world)
            return
        self.data.set_epoch(epoch)
        for x, y, rows in batches(self.loader, self.config.batch_size, drop_last):
            # int16 crosses to the device as int16 and becomes float32 there.
            yield (to_float(x.to(self.device, non_blocking=True), self.data.scale),
                   y.to(self.device, non_blocking=True), rows)
