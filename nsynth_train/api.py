"""The functions behind ``nsynth train``, ``nsynth eval`` and ``nsynth demo``, callable from Python."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .evaluate import evaluate_run
from .loop import TrainConfig, train

log = logging.getLogger(__name__)


def report(result: dict[str, Any], out: Path) -> str:
    """A short, readable summary of a metrics dict."""
    split = result["split"]
    m = result[split]
    per_class = ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["per_class_accuracy"].items() if v is not None)
    lines = [f"{result['model']} / {result['task']} task, {split} split ({m['notes']:,} notes, "
             f"checkpoint of epoch {result['epoch']}):",
             f"  accuracy {100 * m['accuracy']:.2f}%   macro-F1 {m['macro_f1']:.3f}   "
             f"chance {100 / len(result['classes']):.0f}%",
             f"  per class: {per_class}",
             f"  metrics: {out / ('metrics.json' if split == 'test' else f'metrics-{split}.json')}"]
    if "figures" in result:
        lines.append(f"  figures: {result['figures']}")
    return "\n".join(lines)


def train_run(task: str = "family", model: str = "cnn", cache_dir: Path = Path("data/cache"),
              out: Path | None = None, resume: bool = False, progress: bool = True, **options: Any) -> dict[str, Any]:
    """Train and test one model; ``options`` are :class:`TrainConfig` fields (None = preset)."""
    config = TrainConfig(task=task, model=model, cache_dir=str(cache_dir), **options)
    out = Path(out) if out else Path("runs") / f"{task}-{model}-seed{config.seed}"
    result = train(config, out, resume=resume, progress=progress)
    result["report"] = f"run: {out}\n" + report(result, out)
    return result


def eval_run(run: Path, cache_dir: Path | None = None, split: str = "test", out: Path | None = None,
             device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Score a run folder or checkpoint on any split."""
    result = evaluate_run(Path(run), cache_dir, split, out, device=device, progress=progress)
    result["report"] = report(result, Path(out) if out else Path(result["checkpoint"]).parent)
    return result


def demo(data_dir: Path, notes_per_split: str = "2400,400,400", epochs: int = 15, progress: bool = True) -> str:
    """Synthesize the corpus into ``data_dir`` once, build its caches, train the CNN on the
    family task, and return where everything is."""
    from nsynth_prep.build import BuildConfig, build_cache
    from nsynth_prep.synth import parse_notes_per_split, write_corpus

    corpus, caches = data_dir / "nsynth", data_dir / "cache"
    marker = corpus / ".complete"
    if not marker.exists():
        log.info("synthesizing the demo corpus into %s", corpus)
        write_corpus(corpus, parse_notes_per_split(notes_per_split), ("jsonwav",), seed=0, progress=progress)
        marker.write_text(notes_per_split + "\n")
    summaries = build_cache(corpus, caches, BuildConfig(features=("pooled", "framed"), workers=2), progress=progress)
    built = "\n".join(s.report() for s in summaries)
    out = data_dir / "runs" / "demo-family-cnn"
    # The reference batch of 1024 would give 2 steps an epoch on the small corpus: use 64.
    result = train_run("family", "cnn", caches, out, resume=False, progress=progress, epochs=epochs, batch_size=64)
    return f"{built}\n\n{result['report']}\n\nNext: nsynth train --model lstm --epochs 10 --batch-size 64; " \
           f"nsynth eval {out} --split valid"
