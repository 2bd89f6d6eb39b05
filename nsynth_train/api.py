"""The functions behind ``nsynth train``, ``nsynth eval`` and ``nsynth demo``'s training half, callable from Python."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

from nsynth_prep.errors import ConfigError
from nsynth_prep.storage.store import Where
from nsynth_train import plots
from nsynth_train.distributed import is_main_process
from nsynth_train.evaluate import evaluate_run
from nsynth_train.loop import TrainConfig, train
from nsynth_train.vocabulary import DEFAULT_MODEL, DEMO_EPOCHS

log = logging.getLogger(__name__)


def report(result: dict[str, Any], out: Path) -> str:
    """A short, readable summary of a metrics dict."""
    split = result["split"]
    m = result[split]
    lines = [result["run"]] if result.get("run") else []
    lines += [f"{result['model']} / {result['task']} task, {split} split ({m['notes']:,} notes, "
              f"checkpoint of epoch {result['epoch']}):"]
    heads = result.get("heads") or {result["task"]: m}
    for name, h in heads.items():
        # A `both` run's first head is the family one: named as its source head is.
        prefix = f"{name} head: " if "heads" in result else "family head: " if "source_head" in result else ""
        lines += _head_lines(h, prefix)
    lines += [*_second_head(result),
             f"  metrics: {out / ('metrics.json' if split == 'test' else f'metrics-{split}.json')}"]
    if "figures" in result:
        lines.append(f"  figures: {result['figures']}")
    return "\n".join(lines)


def _head_lines(m: dict[str, Any], prefix: str) -> list[str]:
    """A head's report lines: accuracy, macro-F1 and per class (with pitch's near misses), or
    for the qualities mAP, micro-F1 and AP per quality."""
    if "per_quality" in m:
        aps = ", ".join(f"{k} {100 * v['ap']:.0f}%" for k, v in m["per_quality"].items() if v["ap"] is not None)
        return [f"  {prefix}mAP {100 * (m['mAP'] or 0):.2f}%   micro-F1 {m['micro_f1']:.3f}   "
                f"macro-F1 {m['macro_f1']:.3f} (at p >= {m['threshold']:g})",
                f"  AP per quality: {aps}"]
    per_class = ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["per_class_accuracy"].items() if v is not None)
    lines = [f"  {prefix}accuracy {100 * m['accuracy']:.2f}%   macro-F1 {m['macro_f1']:.3f}   "
             f"chance {100 / len(m['per_class_accuracy']):.0f}%"]
    if "within_1_semitone" in m:
        lines.append(f"  within +-1 semitone {100 * m['within_1_semitone']:.2f}%   octave errors "
                     f"{100 * m['octave_error_rate']:.2f}%")
    if len(m["per_class_accuracy"]) > 20:  # pitch: dozens of classes, a line no one reads
        return [*lines, "  per class: in metrics.json"]
    return [*lines, f"  per class: {per_class}"]


def _second_head(result: dict[str, Any]) -> list[str]:
    """The report lines of a ``both`` run's source head and its family/source consistency."""
    if "source_head" not in result:
        return []
    m = result["source_head"]
    per_class = ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["per_class_accuracy"].items() if v is not None)
    c = result["consistency"]
    odd = [f"{p['family']}/{p['source']} ({p['notes']})" for p in c["pairs"] if not p["in_train"]]
    return [f"  source head: accuracy {100 * m['accuracy']:.2f}%   macro-F1 {m['macro_f1']:.3f}   ({per_class})",
            f"  predicted (family, source) pairs seen in train: {100 * c['fraction_in_train']:.1f}% of notes"
            + (f"; never seen: {', '.join(odd[:5])}" if odd else "")]


def default_out(config: TrainConfig) -> Path:
    """``runs/<task>-<model>-<hash of every resolved setting>``: other settings, another folder;
    the same command, the same folder (where ``--resume`` finds it)."""
    resolved = config.resolved()
    task = resolved.task.replace(",", "+")  # family,source,pitch -> family+source+pitch
    return Path("runs") / f"{task}-{resolved.model}-{resolved.fingerprint()}"


def train_run(task: str = "family", model: str = DEFAULT_MODEL, cache_dir: Where = Path("data/cache"),
              out: Path | None = None, resume: bool = False, overwrite: bool = False, progress: bool = True,
              figures: bool = True, html_report: bool | None = None, tensorboard: bool = False,
              figure_formats: tuple[str, ...] | None = None, **options: Any) -> dict[str, Any]:
    """Train and test one model; ``options`` are :class:`TrainConfig` fields (None = preset).

    ``out`` defaults to :func:`default_out`. A folder that holds a run is refused unless
    ``resume`` (continue it) or ``overwrite`` (replace it). ``figures=False`` leaves the test
    split's figures out (metrics only). ``html_report``: write the HTML report (``out/report/``,
    :func:`nsynth_train.report.write_report`) at the end; default: when ``figures``.
    ``tensorboard``: log each epoch and the test confusion matrix to ``out/tensorboard/``
    (:mod:`nsynth_train.tensorboard_log`; needs the ``tensorboard`` extra). ``figure_formats``:
    the figures in each of these (``png``, ``svg``, ``pdf``; default PNG).
    """
    with plots.figure_formats(figure_formats):
        return _train_run(task, model, cache_dir, out, resume, overwrite, progress, figures, html_report, tensorboard,
                          **options)


def _train_run(task: str, model: str, cache_dir: Where, out: Path | None, resume: bool, overwrite: bool,
               progress: bool, figures: bool, html_report: bool | None, tensorboard: bool,
               **options: Any) -> dict[str, Any]:
    config = TrainConfig(task=task, model=model, cache_dir=str(cache_dir), **options)
    out = Path(out) if out else default_out(config)
    if is_main_process():
        log.info("run folder: %s", out)
    board = None
    if tensorboard and is_main_process():
        from nsynth_train.tensorboard_log import TensorBoardLog

        board = TensorBoardLog(out)
    try:
        result = train(config, out, resume=resume, overwrite=overwrite, progress=progress, figures=figures,
                       hooks=[board.epoch] if board else None)
        if board:
            board.confusion(result, config.model)
    finally:
        if board:
            board.close()
    # Under torchrun every rank returns the metrics; rank 0 alone reports them.
    result["report"] = f"run: {out}\n" + report({**result, "run": None}, out) if is_main_process() else ""
    result["out"] = str(out)
    if is_main_process() and (figures if html_report is None else html_report):
        from nsynth_train.report import write_report

        result["html"] = str(write_report(out, overwrite=True, device=options.get("device") or "auto"))
        result["report"] += f"\n  report: {result['html']}"
    return result


def train_seeds(seeds: list[int], out: Path | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`train_run` once per seed with the same settings, into sibling folders
    (``<out>-seed<N>``, or each seed's default folder); returns each run's result, and the report
    of the last ends with the runs' table grouped over the seeds (mean +- std and n)."""
    from nsynth_train import runs_table

    if "seed" in kwargs:
        raise ConfigError("pass seeds, or one seed, not both")
    results = [train_run(out=Path(f"{out}-seed{seed}") if out else None, seed=seed, **kwargs) for seed in seeds]
    if results and is_main_process():
        rows = runs_table.group_rows([runs_table.run_row(Path(r["out"])) for r in results])
        results[-1]["report"] += f"\n\n{len(seeds)} seeds:\n{runs_table.to_text(rows)}"
    return results


def eval_run(run: Path, cache_dir: Where | None = None, split: str = "test", out: Path | None = None,
             device: str = "auto", progress: bool = True, figure_formats: tuple[str, ...] | None = None
             ) -> dict[str, Any]:
    """Score a run folder or checkpoint on any split. Under torchrun, rank 0 alone scores (the
    others return ``{"report": ""}``): evaluation is one process's work."""
    if not is_main_process():
        return {"report": ""}
    with plots.figure_formats(figure_formats):
        result = evaluate_run(Path(run), cache_dir, split, out, device=device, progress=progress)
    result["report"] = report(result, Path(out) if out else Path(result["checkpoint"]).parent)
    return result


def demo_run(data_dir: Path, caches: Where, epochs: int = DEMO_EPOCHS, progress: bool = True) -> str:
    """The training half of ``nsynth demo``: the default model (mel-cnn) on the family task,
    trained on ``caches`` (:func:`nsynth_prep.demo_caches` makes them) into a new folder
    ``data_dir/runs/demo-family-mel-cnn-N``; returns its report and what to try next."""
    out = _new_folder(data_dir / "runs" / f"demo-family-{DEFAULT_MODEL}")  # never the folder of an earlier demo
    # No batch size: on the demo's small corpus the preset's is made smaller (and said so), as
    # `nsynth train` does.
    result = train_run("family", DEFAULT_MODEL, caches, out, resume=False, progress=progress, epochs=epochs)
    # Not --task source: the synthetic corpus's source cues do not carry over to unseen instruments
    # (docs/training.md#tasks); pitch does (95.5 % on the demo corpus).
    text = (f"{result['report']}\n\nNext: nsynth train --task pitch; nsynth train --model cnn (the reference "
            f"CNN, as published); nsynth eval {out} --split valid")
    if "html" in result:  # the last line: where to look and listen
        text += f"\n\nThe report, to open in a browser: {result['html']}"
    return text


def _new_folder(base: Path) -> Path:
    """``base-1``, ``base-2``...: the first that does not exist, created (atomically, so two
    demos at once get two folders)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        path = base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")
