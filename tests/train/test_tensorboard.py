"""train --tensorboard: per-epoch scalars and the confusion figure in <run>/tensorboard/, read
back with TensorBoard's own reader; nothing of TensorBoard imported when it is off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nsynth_train.api import train_run

pytestmark = pytest.mark.slow  # trainings, one in a fresh interpreter (over 10 s each under load)

pytest.importorskip("tensorboard", reason="pip install -e '.[test]' (tensorboard is in the test extra)")


def test_tensorboard_logs_every_epoch_and_the_confusion_matrix(run_caches: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_run(model="cnn", cache_dir=run_caches, out=tmp_path / "run", epochs=2, batch_size=16, device="cpu", progress=False,
              figures=False, tensorboard=True)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"loss/train", "loss/valid", "accuracy/train", "accuracy/valid", "lr", "speed/notes_per_s"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("accuracy/valid")] == [1, 2]
    assert events.Scalars("lr")[0].value == pytest.approx(1e-3)
    assert tags["images"] == ["confusion/family"]
    assert events.Images("confusion/family")[0].encoded_image_string[:4] == b"\x89PNG"


def test_nothing_of_tensorboard_is_imported_when_off(run_caches: Path, tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; import cli; from nsynth_train.api import train_run; "
            f"train_run(cache_dir={str(run_caches)!r}, out=Path({str(tmp_path / 'run')!r}), epochs=1, batch_size=16, "
            "device='cpu', progress=False, figures=False); "
            "print(sorted(m for m in sys.modules if 'tensorboard' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
