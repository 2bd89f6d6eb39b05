"""nsynth report: which notes are listed, the files beside the page, the page itself (static,
relative links only, bounded), one section per head, eval outputs, and train's report."""

from __future__ import annotations

import re
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from nsynth_prep.errors import RunError
from nsynth_train.evaluate import evaluate_run
from nsynth_train.loop import TrainConfig, train
from nsynth_train.report import write_report
from nsynth_train.report.media import png_bytes, waveform_rows
from nsynth_train.report.select import boundary_notes, cell_notes, confident_errors, margins


def test_cells_list_their_most_confident_notes_up_to_the_cap() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]])
    y = np.array([0, 0, 0, 0, 1, -1])  # the last note is outside the head's classes
    cells = cell_notes(probs, y, per_cell=2)
    assert set(cells) == {(0, 0), (0, 1), (1, 1)}
    assert cells[(0, 0)].tolist() == [0, 2] and cells[(0, 1)].tolist() == [3] and cells[(1, 1)].tolist() == [4]
    assert confident_errors(probs, y).tolist() == [3]
    np.testing.assert_allclose(margins(probs), [0.8, 0.2, 0.6, 0.4, 0.1, 0.6])
    assert {c: v.tolist() for c, v in boundary_notes(probs, y, per_class=1).items()} == {0: [1], 1: [4]}


def test_png_encoder_writes_what_it_is_given(tmp_path: Path) -> None:
    img = waveform_rows(np.sin(np.linspace(0, 20, 4000)), width=50, height=20)
    img[0, 0] = (1, 2, 3)
    data = png_bytes(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and zlib.crc32(data[12:29]) == int.from_bytes(data[29:33], "big")
    (tmp_path / "a.png").write_bytes(data)
    back = matplotlib.image.imread(tmp_path / "a.png")  # another decoder: floats in [0, 1]
    np.testing.assert_array_equal(np.rint(back[..., :3] * 255).astype(np.uint8), img)


def local_links(page: Path) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#][^"]*)"', page.read_text())


def check_static(page: Path) -> None:
    """No network: no URL with a scheme anywhere in src/href, and every linked file exists."""
    text = page.read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
    for link in local_links(page):
        assert (page.parent / link).is_file(), link


def test_the_report_of_a_finished_run(finished_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    page = write_report(run, per_cell=2, device="cpu")
    assert page == run / "report" / "index.html"
    check_static(page)
    text = page.read_text()
    assert text.count('<h2 id="head-') == 1 and "family head" in text
    assert "settings and provenance" in text and "config.json" in text and "<svg" in text  # curves
    wavs = sorted((page.parent / "notes").glob("*.wav"))
    assert wavs and len(wavs) == len(list((page.parent / "notes").glob("*.png")))
    # The bound: per cell at most 2 listed notes; errors and boundary notes add at most 10 + 2 per class.
    cells = re.findall(r'data-panel="(h0-c\d+-\d+)"', text)
    assert len(wavs) <= 2 * len(cells) + 10 + 2 * 10
    for panel in re.findall(r'<div class="panel" id="[^"]+" data-head="0" hidden>(.*?)</div></div></div>', text):
        assert panel.count("<audio") <= 2
    assert "2 of " in text or "all " in text
    with pytest.raises(RunError, match="pass --overwrite"):
        write_report(run, device="cpu")
    assert not list(run.glob(".report.*"))  # no work folder left behind


def test_one_section_per_head_and_the_report_of_an_eval_output(run_caches: Path, tmp_path: Path) -> None:
    run = tmp_path / "both"
    config = TrainConfig(task="both", model="cnn", cache_dir=str(run_caches), epochs=1, batch_size=16, device="cpu")
    train(config, run, progress=False, figures=False)
    page = write_report(run, device="cpu")
    text = page.read_text()
    assert "family head" in text and "source head" in text and text.count('<h2 id="head-') == 2
    check_static(page)
    evaluate_run(run, None, "valid", tmp_path / "eval", device="cpu", progress=False, figures=False)
    page = write_report(tmp_path / "eval", device="cpu")  # the eval output's split and checkpoint
    assert page == tmp_path / "eval" / "report-valid" / "index.html" and "valid split" in page.read_text()
    check_static(page)


@pytest.mark.usefixtures("no_figures")
def test_report_command_and_train_without_one(run_caches: Path, tmp_path: Path, cli: Callable[..., object]) -> None:
    common = ("train", "--cache", run_caches, "--epochs", "1", "--batch-size", "16", "--device", "cpu")
    result = cli(*common, "--out", tmp_path / "a", "--no-report")
    assert result.exit_code == 0 and not (tmp_path / "a" / "report").exists()  # type: ignore[attr-defined]
    result = cli("report", tmp_path / "a", "--split", "valid", "--per-cell", "1")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert (tmp_path / "a" / "report-valid" / "index.html").is_file()
    result = cli("report", tmp_path / "a", "--split", "valid")
    assert result.exit_code == 1 and "pass --overwrite" in result.stderr  # type: ignore[attr-defined]


@pytest.mark.slow
def test_demo_ends_by_saying_where_its_report_is(run_caches: Path, tmp_path: Path) -> None:
    from nsynth_train.api import demo_run

    text = demo_run(tmp_path, run_caches, epochs=1, progress=False)
    page = tmp_path / "runs" / "demo-family-mel-cnn-1" / "report" / "index.html"
    assert text.splitlines()[-1] == f"The report, to open in a browser: {page}"  # train_run's report, at the end
    assert f"  report: {page}" in text
    check_static(page)


def test_a_pooled_only_cache_plays_the_source_wav_or_the_held_means(caches_of: Callable[..., Path],
                                                                     corpus: Path) -> None:
    from types import SimpleNamespace

    from nsynth_prep.cache.format import open_cache
    from nsynth_prep.readers.wav_any import read_wav_any
    from nsynth_train.report.build import NoteFiles

    cache = open_cache(caches_of("pooled") / "test.zarr")
    files = NoteFiles(SimpleNamespace(cache=cache, rows=np.arange(3)), Path("unused"))  # type: ignore[arg-type]
    note = str(cache.labels().note_str[1])
    source, _ = read_wav_any(corpus / "nsynth-test" / "audio" / f"{note}.wav")
    np.testing.assert_array_equal(files._audio(1, note), source[:, 0])  # the note's own 4 s
    elsewhere = SimpleNamespace(format="tfrecord", path=str(corpus))  # no WAV to find: the means, held
    files.cache = SimpleNamespace(meta=SimpleNamespace(build=SimpleNamespace(source=elsewhere)),  # type: ignore[assignment]
                                  floats=cache.floats, feature=cache.feature)
    held = files._audio(1, note)
    assert held.shape == (51_200,) and np.array_equal(held[::25], cache.floats("pooled", np.array([1]))[0])
    assert "held for 25 samples" in files.what


def test_wide_and_multilabel_heads_list_notes_without_a_matrix_of_cells() -> None:
    from nsynth_train.report import page, select

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(30), 50)
    y = rng.integers(-1, 30, 50)
    near = select.nearest_boundary(probs, y, 5)
    assert len(near) == 5 and (y[near] >= 0).all()
    assert select.margins(probs)[near].max() <= np.sort(select.margins(probs)[y >= 0])[4]
    note = page.Note("n", "notes/n.wav", "notes/n.png", "c1", "c2", [("c2", 0.4)])
    wide = page.Head("pitch", [f"c{i}" for i in range(30)], np.zeros((30, 30), int).tolist(),
                     {"accuracy": 0.5, "macro_f1": 0.4, "notes": 50, "per_class_accuracy": {}}, {}, [note],
                     {-1: [note]}, matrix=False)
    html = page.head_section(wide, 0)
    assert "button" not in html and "30 classes: too many" in html and "all classes" in html
    flags = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [1, 0]])
    probs2 = np.array([[0.9, 0.1], [0.2, 0.7], [0.4, 0.1], [0.6, 0.2], [0.1, 0.0]])
    errs = select.flag_errors(probs2, flags, 3)
    # label 0: rows 4 (0.1) and 1 (0.2) missed, the most confident no first; row 3 a false alarm.
    # Label 1: row 1 a false alarm (0.7), row 2 missed (0.1).
    assert {k: v.tolist() for k, v in errs.items()} == {(0, "missed"): [4, 1], (0, "false"): [3],
                                                       (1, "missed"): [2], (1, "false"): [1]}
