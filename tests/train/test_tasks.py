"""The tasks beyond family and source: pitch, velocity, qualities (multi-label), comma lists of
heads with loss weights, instrument refused; their metrics by hand, and training on a hand-made
corpus whose every label can be heard (tests/hand_corpus.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hand_corpus import write_hand_corpus

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.errors import ConfigError
from nsynth_train.config import TrainConfig
from nsynth_train.epoch import HeadObjective, Objective, head_counts, head_scores
from nsynth_train.head_metrics import average_precision, breakdown, multilabel_summary, note_counts, pitch_summary
from nsynth_train.tasks import TASKS, Task, canonical, make_task, pitch_task


class Labels:
    """A stand-in train cache: label columns by name."""

    def __init__(self, **columns: np.ndarray) -> None:
        self.columns = columns

    def label(self, name: str) -> np.ndarray:
        return self.columns[name]


def test_task_names_and_refusals() -> None:
    with pytest.raises(ConfigError, match="disjoint instruments"):
        TrainConfig(task="instrument")
    with pytest.raises(ConfigError, match="disjoint instruments"):
        TrainConfig(task="family,instrument")
    with pytest.raises(ConfigError, match="names a head twice"):
        TrainConfig(task="family,family")
    with pytest.raises(ConfigError, match="unknown head 'both'"):
        TrainConfig(task="both,pitch")
    with pytest.raises(ConfigError, match="give its cache"):
        make_task("pitch")
    assert TrainConfig(task="family, pitch").task == "family,pitch"
    # Loss weights: one per head, normalised to one spelling; refused for one head or a wrong count.
    assert TrainConfig(task="family,pitch", head_weights=(1, 0.5)).head_weights == "1,0.5"
    assert TrainConfig(task="both", head_weights="2,1.0").weights() == (2.0, 1.0)
    for task, weights, message in (("family", "1", "several heads"), ("family,pitch", "1", "1 weight"),
                                   ("family,pitch", "0,0", "at least one above 0"), ("both", "1,x", "numbers")):
        with pytest.raises(ConfigError, match=message):
            TrainConfig(task=task, head_weights=weights)
    # A run folder's name and hash for the tasks that existed are as they were before head_weights.
    assert TrainConfig(model="cnn").fingerprint() == "85b5164a"  # the default before mel-cnn: same folder
    assert TrainConfig(task="both", model="mel-cnn", epochs=3, cache_dir="/x").resolved().fingerprint() == "f8a1d822"


def test_tasks_and_their_dicts() -> None:
    train = Labels(pitch=np.array([60, 48, 60, 72]))
    task = make_task("velocity,qualities,pitch", train)
    assert [h.name for h, _ in task.heads()] == ["velocity", "qualities", "pitch"]
    assert [(p.start, p.stop) for _, p in task.heads()] == [(0, 5), (5, 15), (15, 18)]
    assert task.outputs == 18 and task.parts[2].class_ids == (48, 60, 72)
    assert Task.from_dict(json.loads(json.dumps(task.to_dict()))) == task == canonical(task.to_dict())
    # Qualities take every note; their targets are the (N, 10) flags.
    flags = np.eye(10, dtype=np.uint8)[:3]
    np.testing.assert_array_equal(TASKS["qualities"].classes_of(flags), [0, 0, 0])
    assert TASKS["qualities"].targets(flags).dtype == np.float32
    np.testing.assert_array_equal(TASKS["velocity"].classes_of(np.array([25, 127, 64])), [0, 4, -1])
    # both's dict is exactly what runs have always stored (old checkpoints still check).
    assert set(TASKS["both"].to_dict()) == {"name", "column", "class_ids", "class_names", "second"}
    assert canonical(pitch_task([60, 62]).to_dict()).class_names == ("60", "62")
    with pytest.raises(ConfigError, match="holds the heads"):
        canonical({**task.to_dict(), "heads": task.to_dict()["heads"][::-1]})


def test_average_precision_by_hand() -> None:
    # Ranked yes, no, yes, no: precision 1 at recall 1/2, 2/3 at recall 1.
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(0.5 + 1 / 3)
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)  # a tie: one threshold
    assert average_precision(np.array([0.5, 0.2]), np.array([0, 0])) is None


def test_multilabel_summary_by_hand() -> None:
    flags = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    probs = np.array([[0.9, 0.1, 0.2], [0.6, 0.4, 0.1], [0.7, 0.3, 0.0], [0.1, 0.8, 0.3]])
    m = multilabel_summary(flags, probs, ("a", "b", "c"))
    a, b, c = (m["per_quality"][k] for k in "abc")
    # a: said yes for notes 0, 1, 2 (2 right, 1 wrong); b: yes for note 3 only (1 right, note 1 missed).
    assert (a["precision"], a["recall"], a["f1"]) == (pytest.approx(2 / 3), 1.0, pytest.approx(0.8))
    assert (b["precision"], b["recall"], b["f1"]) == (1.0, 0.5, pytest.approx(2 / 3))
    assert c == {"positives": 0, "ap": None, "precision": None, "recall": None, "f1": 0.0}
    # a ranks yes (0.9), no (0.7), yes (0.6): precision 1 at recall 1/2, 2/3 at 1; b ranks its yes notes first.
    assert a["ap"] == pytest.approx(5 / 6) and b["ap"] == pytest.approx(1.0)
    assert m["mAP"] == pytest.approx((5 / 6 + 1) / 2)  # the mean over the labels that have notes
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["subset_accuracy"] == pytest.approx(2 / 4)  # notes 0 and 3 wholly right
    assert m["confusion"][0] == [[1, 1], [0, 2]] and m["confusion"][1] == [[2, 0], [1, 1]]


def test_pitch_and_breakdown_by_hand() -> None:
    ids = (48, 60, 61, 72)
    y, pred = np.array([0, 1, 1, 3]), np.array([0, 2, 3, 1])  # errors 0, +1, +12, -12 semitones
    m = pitch_summary(y, pred, ids, np.array([4, 4, 3, 3]), ("f0", "f1", "f2", "guitar", "keyboard"))
    assert m["within_1_semitone"] == 0.5 and m["octave_error_rate"] == 0.5
    assert m["accuracy_by_family"] == {"guitar": {"notes": 2, "accuracy": 0.0}, "keyboard": {"notes": 2, "accuracy": 0.5}}
    assert m["error_histogram"] == {"-12": 1, "0": 1, "1": 1, "12": 1}
    probs = np.eye(4)[pred]
    b = breakdown(note_counts(np.array([0, 1, 1, -1]), probs, False), np.array([48, 60, 61, 72]),
                  np.array([25, 25, 127, 127]), False)
    assert b["by_pitch_range"] == {"C3-B3 (48-59)": {"notes": 1, "accuracy": 1.0},
                                   "C4-B4 (60-71)": {"notes": 2, "accuracy": 0.0},
                                   "C5-B5 (72-83)": {"notes": 0, "accuracy": None}}  # its one note is not scored
    assert b["by_velocity"] == {"25": {"notes": 2, "accuracy": 0.5}, "127": {"notes": 1, "accuracy": 0.0}}
    flags, said = np.array([[1, 0], [1, 1]]), np.array([[0.9, 0.9], [0.1, 0.9]])
    b = breakdown(note_counts(flags, said, True), np.array([60, 72]), np.array([25, 25]), True)
    assert b["by_pitch_range"]["C4-B4 (60-71)"] == {"notes": 1, "micro_f1": pytest.approx(2 / 3)}
    assert b["by_velocity"]["25"]["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))


def test_epoch_scores_by_hand() -> None:
    """The valid score that picks the best checkpoint: the plain mean of the heads' scores."""
    cls, multi = HeadObjective(slice(0, 3)), HeadObjective(slice(3, 5), targets=torch.zeros(1), multilabel=True)
    logits = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]])
    counts_cls = head_counts(cls, logits, torch.tensor([0, 2, -1]))  # one hit, one miss, one not scored
    counts_ml = head_counts(multi, torch.tensor([[1.0, -1.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert counts_cls.tolist() == [1, 2, 0] and counts_ml.tolist() == [2, 1, 0]
    scores = head_scores(torch.stack([counts_cls, counts_ml]), Objective(heads=[cls, multi]))
    assert scores == [0.5, pytest.approx(0.8)]


# --- training on the hand-made corpus --------------------------------------------------------------
@pytest.fixture(scope="module")
def hand_caches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = tmp_path_factory.mktemp("hand")
    write_hand_corpus(corpus)
    out = tmp_path_factory.mktemp("hand-caches")
    for split in ("train", "valid", "test"):
        build_cache(corpus / f"nsynth-{split}", out, BuildConfig(features=("trimmed",)), progress=False)
    return out


@pytest.mark.slow
def test_heads_learn_from_python(hand_caches: Path, tmp_path: Path) -> None:
    from nsynth_train import api

    out = tmp_path / "run"
    result = api.train_run("velocity,qualities,pitch", "mel-cnn", hand_caches, out, progress=False, device="cpu",
                           epochs=4, batch_size=8, head_weights=(1, 1, 2))
    heads = result["heads"]
    assert list(heads) == ["velocity", "qualities", "pitch"] and result["head_weights"] == [1.0, 1.0, 2.0]
    assert result["test"] == heads["velocity"]  # the first head also where one-head runs keep it
    # Above chance on every head (velocity: 3 of its 5 classes present; pitch: 6 pitches).
    assert heads["velocity"]["accuracy"] > 0.5 and heads["pitch"]["accuracy"] > 0.5
    prevalence = {q: v["positives"] / 36 for q, v in heads["qualities"]["per_quality"].items() if v["positives"]}
    assert set(prevalence) == {"bright", "fast_decay"}
    assert all(heads["qualities"]["per_quality"][q]["ap"] > p + 0.2 for q, p in prevalence.items())
    assert heads["pitch"]["within_1_semitone"] >= heads["pitch"]["accuracy"]
    for h in heads.values():
        assert sum(b["notes"] for b in h["by_velocity"].values()) == 36
    figures = Path(result["figures"])
    assert (figures / "learning_curves.png").is_file()
    for head, names in {"velocity_head": ("confusion_counts", "per_class_accuracy", "breakdown"),
                        "qualities_head": ("qualities_ap", "qualities_confusion", "breakdown"),
                        "pitch_head": ("pitch", "breakdown")}.items():
        assert {f"{n}.png" for n in names} <= {p.name for p in (figures / head).iterdir()}, head
    # The HTML report has a section per head; the qualities head's lists its misses and false alarms.
    page = Path(result["html"]).read_text()
    assert all(f"{h} head</h2>" in page for h in heads) and "mAP <b>" in page
    qualities = page[page.index("qualities head</h2>"):page.index("pitch head</h2>")]
    assert "bright" in qualities and ("missed" in qualities or "false alarms" in qualities)
    for wav in re.findall(r'src="(notes/[^"]+\.wav)"', qualities):
        assert (Path(result["html"]).parent / wav).is_file()
    # The best checkpoint was chosen by the mean of the heads' valid scores: scoring it on valid
    # again gives that mean (accuracy, micro-F1 for the qualities, accuracy).
    valid = api.eval_run(out, split="valid", device="cpu", progress=False)["heads"]
    mean = np.mean([valid["velocity"]["accuracy"], valid["qualities"]["micro_f1"], valid["pitch"]["accuracy"]])
    best = max(h["valid_accuracy"] for h in _history(out))
    assert mean == pytest.approx(best)


def _history(out: Path) -> list[dict[str, float]]:
    import csv

    with open(out / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_pitch_from_the_command_line(hand_caches: Path, tmp_path: Path, cli: Callable) -> None:
    out = tmp_path / "pitch"
    r = cli("train", "--task", "pitch", "--model", "mel-cnn", "--cache", hand_caches, "--epochs", "3",
            "--batch-size", "8", "--device", "cpu", "--out", out)
    assert r.exit_code == 0, r.output
    assert "within +-1 semitone" in r.output and "octave errors" in r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["classes"] == ["48", "52", "55", "60", "64", "67"] and m["test"]["accuracy"] > 0.5
    assert {"within_1_semitone", "octave_error_rate", "accuracy_by_family", "by_pitch_range", "by_velocity"} <= set(m["test"])
    assert {p.name for p in (out / "figures").iterdir()} == {"learning_curves.png", "pitch.png", "breakdown.png"}
    again = cli("eval", out, "--split", "valid", "--device", "cpu")  # the stored pitch classes load and check
    assert again.exit_code == 0, again.output


def test_refusals_on_the_command_line(cli: Callable, tmp_path: Path) -> None:
    r = cli("train", "--task", "instrument", "--cache", tmp_path)
    assert r.exit_code == 2 and "disjoint instruments" in r.output
    r = cli("train", "--task", "pitch,pitch", "--cache", tmp_path)
    assert r.exit_code == 2 and "names a head twice" in r.output
