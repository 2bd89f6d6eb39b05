"""nsynth runs and train --seeds: the table of runs, grouped over seeds (mean +- std, n), sorted,
as text, JSON, CSV and HTML."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

from nsynth_prep.errors import ConfigError
from nsynth_train.runs_table import table, to_csv, to_html

# The fixture trains three 1-epoch runs (about 15 s): those tests are marked slow one by one.


@pytest.fixture(scope="module")
def seed_runs(run_caches: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds of the same CNN settings and one run of other settings, by `train --seeds`."""
    from functools import partial

    from click.testing import CliRunner

    from cli import main
    from nsynth_train import api

    out = tmp_path_factory.mktemp("runs")
    common = ["train", "--model", "cnn", "--cache", str(run_caches), "--epochs", "1", "--batch-size", "16", "--device", "cpu",
              "--no-report"]
    with pytest.MonkeyPatch.context() as patch:  # no figures: seconds each (conftest's no_figures, per module)
        patch.setattr(api, "train_run", partial(api.train_run, figures=False))
        result = CliRunner().invoke(main, [*common, "--seeds", "0,1", "--out", str(out / "cnn")])
        assert result.exit_code == 0, result.output
        assert "2 seeds:" in result.stdout and "0,1" in result.stdout  # the grouped table printed at the end
        result = CliRunner().invoke(main, [*common, "--lr", "0.01", "--out", str(out / "fast")])
        assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_runs_differing_only_in_seed_are_one_row(seed_runs: Path) -> None:
    assert sorted(p.name for p in seed_runs.iterdir()) == ["cnn-seed0", "cnn-seed1", "fast"]
    single = table([seed_runs], group=False)
    assert len(single) == 3 and {r["seed"] for r in single} == {0, 1}
    grouped = table([seed_runs], sort="acc family")
    assert len(grouped) == 2
    two = next(r for r in grouped if r["n"] == 2)
    accs = [r["acc family"] for r in single if r["lr"] == 0.001]
    assert two["seed"] == "0,1" and two["acc family"]["n"] == 2
    assert two["acc family"]["mean"] == pytest.approx(statistics.fmean(accs))
    assert two["acc family"]["std"] == pytest.approx(statistics.stdev(accs))
    means = [r["acc family"]["mean"] for r in grouped]
    assert means == sorted(means, reverse=True)
    with pytest.raises(ConfigError, match="no column 'nope'"):
        table([seed_runs], sort="nope")


@pytest.mark.slow
def test_runs_command_formats(seed_runs: Path, tmp_path: Path, cli: Callable[..., object]) -> None:
    text = cli("runs", seed_runs, "--html", tmp_path / "runs.html").stdout  # type: ignore[attr-defined]
    header = text.splitlines()[0].split()
    assert header[:8] == ["model", "task", "feature", "epochs", "batch", "lr", "seed", "n"] and "±" in text
    rows = json.loads(cli("runs", seed_runs, "--json", "--no-group").stdout)  # type: ignore[attr-defined]
    assert len(rows) == 3 and all({"acc family", "F1 family", "notes_per_s", "git", "date"} <= set(r) for r in rows)
    parsed = list(csv.DictReader(io.StringIO(to_csv(table([seed_runs])))))
    assert {r["acc family n"] for r in parsed} == {"2", "1"}
    page = (tmp_path / "runs.html").read_text()
    assert page.count("<polyline") == 2 * 3 and "https://" not in page  # every run's curves, both charts
    assert to_html([]).count("<table>") == 1
    assert cli("runs", tmp_path / "nowhere").exit_code == 1  # type: ignore[attr-defined]
    assert cli("train", "--seeds", "0,x").exit_code == 2  # type: ignore[attr-defined]
    assert cli("train", "--seeds", "0,1", "--seed", "3").exit_code == 2  # type: ignore[attr-defined]


def test_a_run_of_several_heads_has_each_heads_column() -> None:
    from nsynth_train.runs_table import columns_of, head_metrics

    metrics = {"task": "family,qualities", "split": "test", "test": {"accuracy": 0.7, "macro_f1": 0.6},
               "heads": {"family": {"accuracy": 0.7, "macro_f1": 0.6},
                         "qualities": {"mAP": 0.4, "macro_f1": 0.3, "micro_f1": 0.5}}}
    assert head_metrics(metrics) == {"family": {"accuracy": 0.7, "macro_f1": 0.6},
                                     "qualities": {"mAP": 0.4, "macro_f1": 0.3}}
    # A qualities-only run: its mAP where a class head has its accuracy.
    assert head_metrics({"task": "qualities", "test": {"mAP": 0.4, "macro_f1": 0.3}}) == \
        {"qualities": {"mAP": 0.4, "macro_f1": 0.3}}
    rows = [{"acc family": 0.7, "F1 family": 0.6, "mAP qualities": 0.4, "F1 qualities": 0.3}]
    heads = [c for c in columns_of(rows) if c in rows[0]]
    assert heads == ["acc family", "F1 family", "mAP qualities", "F1 qualities"]
