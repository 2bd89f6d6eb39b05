"""A checkpoint write that fails reports the OS's own error: a full disk as one "disk full" line,
a failing device (EIO) as what it is, never guessed from a message; nothing half-written is left."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import torch

from nsynth_prep.errors import StorageError
from nsynth_train import checkpoint


class FailingFile:
    """What ``open`` gives inside checkpoint.save: writes half, then fails with ``code``."""

    def __init__(self, path: Path, code: int) -> None:
        self.path, self.code = Path(path), code

    def __enter__(self) -> FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, data: Any) -> int:
        self.path.write_bytes(bytes(data)[: len(data) // 2])  # a short write on the temporary file
        raise OSError(self.code, errno.errorcode[self.code], str(self.path))


def save_with(monkeypatch: pytest.MonkeyPatch, path: Path, code: int) -> None:
    monkeypatch.setattr(checkpoint, "open", lambda p, mode: FailingFile(p, code), raising=False)
    checkpoint.save(path, model=torch.nn.Linear(4, 2), optimizer=None, epoch=1, config={}, task={}, extra={})


def test_a_full_disk_is_one_disk_full_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StorageError, match=r"cannot write \(disk full\)"):
        save_with(monkeypatch, tmp_path / "best.pt", errno.ENOSPC)
    assert list(tmp_path.iterdir()) == []  # neither the checkpoint nor its temporary file


def test_a_failing_device_is_not_called_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OSError) as raised:
        save_with(monkeypatch, tmp_path / "best.pt", errno.EIO)
    assert raised.value.errno == errno.EIO and not isinstance(raised.value, StorageError)
    assert "disk full" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_a_saved_checkpoint_loads_back(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 2)
    checkpoint.save(tmp_path / "last.pt", model=model, optimizer=None, epoch=3, config={"a": 1}, task={}, extra={})
    state = torch.load(tmp_path / "last.pt", weights_only=True)  # the file as written, unchecked
    assert state["format"] == checkpoint.FORMAT and state["epoch"] == 3 and state["config"] == '{"a": 1}'
    assert all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
