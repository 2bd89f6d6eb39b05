"""The ``nsynth`` command line: glue only; every command calls one library function.

Heavy libraries (torch, matplotlib, zarr, numba) are imported inside the commands, so
``nsynth --help`` is instant and ``nsynth prep`` never loads torch.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from nsynth_prep.storage.store import Location, location
from nsynth_prep.vocabulary import FEATURE_NAMES, FORMATS, ON_ERROR
from nsynth_train import vocabulary as vocab  # no torch: names and preset values only

# The embedded default: ./data (or $NSYNTH_DATA), where the demo corpus, caches and runs go.
# Resolved from the working directory, never from where the package is installed.
DATA_DIR = Path(os.environ.get("NSYNTH_DATA") or "data")
DEFAULT_CACHE = DATA_DIR / "cache"
# What an option left out means for the training options: the preset's value, off in every preset
PRESET_DEFAULT = {name: f"Default: the preset's ({value if isinstance(value, str) else vocab.number(value)})."
                  for name, value in vocab.REFERENCE_OPTIONS.items()}

log = logging.getLogger("nsynth")


# --- caches on object storage -----------------------------------------------------------------
class CacheLocation(click.ParamType):
    """A cache (or cache folder) argument: a local path, or an fsspec URL (s3://bucket/prefix,
    gs://..., file:///...) read with the storage options of the environment (AWS_* variables)."""

    name = "PATH|URL"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Location:
        where = location(value if isinstance(value, str | Path) else str(value))
        if isinstance(where, Path) and where.is_file():
            self.fail(f"{where}: is a file, not a cache folder", param, ctx)
        return where


CACHE = CacheLocation()


class TaskName(click.ParamType):
    """A --task value: a task name or a comma list of heads, checked by the vocabulary (no torch)."""

    name = "task"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        heads, problem = vocab.task_heads(str(value))
        if problem:
            self.fail(problem, param, ctx)
        return ",".join(heads)


TASK = TaskName()


class NsynthGroup(click.Group):
    """The top-level group: the project's own errors (bad data, bad settings) become one line
    and exit status 1; Ctrl-C one line and 130 (the shell's convention for SIGINT); anything
    else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from nsynth_prep.errors import NsynthError

        try:
            return super().invoke(ctx)
        except NsynthError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt as exc:  # Ctrl-C: one line (train: the command that resumes), exit 130
            if os.environ.get("RANK", "0") in ("", "0") or os.environ.get("WORLD_SIZE", "1") == "1":
                # (under torchrun, rank 0 alone says it: every rank gets the terminal's Ctrl-C)
                click.secho(str(exc) or "interrupted; the same command resumes where it stopped", fg="yellow", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            from nsynth_prep.errors import out_of_memory

            if (line := out_of_memory(exc)) is not None:  # not a bug: say what ran out, in one line
                click.secho(f"error: {line}", fg="red", err=True)
                sys.exit(1)
            click.secho("nsynth hit an internal error: a bug in nsynth, not a problem with your data. "
                        "Please report it with the command you ran and the traceback below.", fg="red", err=True)
            raise


def _check_notes_per_split(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--notes-per-split``: a count the corpus makers cannot take is an option error (exit 2)."""
    from nsynth_prep.errors import ConfigError
    from nsynth_prep.readers.tones import parse_notes_per_split

    if value is not None:
        try:
            parse_notes_per_split(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc).removeprefix("--notes-per-split "), ctx, param) from None
    return value


@click.group(cls=NsynthGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def main(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """nsynth: NSynth instrument classification, from the shipped files to trained models.

    \b
    prep     read NSynth (JSON+WAV, .jsonwav.tar.gz, TFRecord) into zarr feature caches
    inspect  look at a cache: counts, shapes, figures
    audit    data-quality checks over caches
    train    train a CNN/RNN on the caches; eval re-scores a run
    predict  classify WAV files with a trained run
    report   a run's HTML error-analysis page: listen to its errors
    runs     compare runs, mean +- std over seeds; export-model: a run as ONNX
    demo     the whole pipeline on a small synthetic corpus in data/

    New here? Start with `nsynth demo`: it makes its own synthetic corpus, nothing to download.
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name in ("nsynth", "nsynth_prep", "nsynth_train"):  # our INFO, not every library's
        logging.getLogger(name).setLevel(level)
    ctx.obj = {"progress": not quiet}


@main.group()
def prep() -> None:
    """Read NSynth as shipped and write zarr feature caches."""


@prep.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--notes-per-split", default="2400,400,400", show_default=True, callback=_check_notes_per_split,
              help="TRAIN,VALID,TEST note counts, or one number for all three.")
@click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True,
              default=("jsonwav",), show_default=True, help="Layouts to write; repeat for several.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same corpus.")
@click.pass_obj
def prep_synth(obj: dict, out: Path, notes_per_split: str, formats: tuple[str, ...], seed: int) -> None:
    """Write a synthetic NSynth-format corpus to OUT.

    Family- and source-dependent timbres, instrument-disjoint splits, synth_lead in train
    only; nsynth-<split>/ folders (examples.json + audio/*.wav), .jsonwav.tar.gz archives
    and/or .tfrecord files, exactly in NSynth's formats.
    """
    from nsynth_prep.corpus.synth import parse_notes_per_split, write_corpus

    counts = write_corpus(out, parse_notes_per_split(notes_per_split), formats, seed, obj["progress"])
    click.echo(f"wrote {', '.join(f'{k} {v:,}' for k, v in counts.items())} notes to {out} ({', '.join(formats)})")


@prep.command("render")
@click.argument("soundfonts", nargs=-1, type=click.Path(dir_okay=True, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", "splits", multiple=True, metavar="SPLIT=FONT[,FONT...]",
              help="Put whole SoundFonts in a split (train, valid, test); repeat. Default: instruments "
                   "are split ~80/10/10 within each family by --seed.")
@click.option("--programs", help="GM programs to render, e.g. 0-87,104-111. Default: every program with an "
                                 "NSynth family.")
@click.option("--family-map", type=click.Path(dir_okay=False, path_type=Path),
              help='JSON overriding the GM -> NSynth table: {"21": {"family": "reed", "source": "acoustic"}, '
                   '"47": null}.')
@click.option("--pitch-step", default=1, show_default=True, help="Render every K-th pitch of each range.")
@click.option("--velocities", default="25,50,75,100,127", show_default=True, help="MIDI velocities.")
@click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True,
              default=("jsonwav",), show_default=True, help="Layouts to write; repeat for several.")
@click.option("--workers", default=2, show_default=True, help="Worker processes (one instrument each at a time).")
@click.option("--seed", default=0, show_default=True, help="Seed of the automatic instrument split.")
@click.pass_obj
def prep_render(obj: dict, soundfonts: tuple[Path, ...], out: Path, splits: tuple[str, ...], programs: str | None,
                family_map: Path | None, pitch_step: int, velocities: str, formats: tuple[str, ...], workers: int,
                seed: int) -> None:
    """Render an NSynth-format corpus from SOUNDFONTS (.sf2/.sf3) into OUT.

    One instrument per SoundFont preset whose General MIDI program has an NSynth family; each
    note held 3 s and released 1 s, 16 kHz mono, over the program's pitch range at each
    velocity. Needs FluidSynth (pip install -e '.[render]' and the FluidSynth library). An
    interrupted render resumes when the same command is run again.
    """
    from nsynth_prep.corpus.render import RenderConfig, render_corpus
    from nsynth_prep.corpus.render_plan import parse_split_fonts

    config = RenderConfig(programs, pitch_step, velocities, formats, workers, seed, family_map)
    summary = render_corpus(list(soundfonts), out, parse_split_fonts(splits) or None, config, obj["progress"])
    click.echo(summary.report())


@prep.command("combine")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def prep_combine(sources: tuple[Path, ...], out: Path) -> None:
    """Combine corpora (prep render, prep synth: JSON+WAV) into one at OUT, split by split.

    Instruments are renumbered so that none of two corpora share a name; the WAVs are
    hard-linked (or copied); OUT/combined.json records every note's name before and after.
    """
    from nsynth_prep.corpus.combine import combine_corpora

    counts = combine_corpora(list(sources), out)
    click.echo(f"wrote {', '.join(f'{k} {v:,}' for k, v in counts.items())} notes to {out} (jsonwav)")


@prep.command("build-cache")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--cache", "cache_dir", type=CACHE, default=DEFAULT_CACHE,
              show_default="data/cache", help="Folder (or s3://, file:// URL) of the caches: <cache>/<split>.zarr.")
@click.option("--feature", "features", type=click.Choice(FEATURE_NAMES), multiple=True, default=("pooled",),
              show_default=True, help="Feature(s) to build; repeat for several. Adds to an existing cache.")
@click.option("--split", help="Split name when the source's name does not say (nsynth-<split>...).")
@click.option("--families", help="Keep only these families (comma-separated names).")
@click.option("--exclude-families", help="Drop these families (comma-separated), e.g. synth_lead.")
@click.option("--exclude-notes", metavar="FILE|nsynth-noise",
              help="Leave out the notes a file names (one note_str a line, # comments); recorded in the cache as "
                   "skipped. nsynth-noise: the shipped list of NSynth test's noise notes (magenta issue 2092).")
@click.option("--seed", default=0, show_default=True, help="Seed of the shuffled row order.")
@click.option("--workers", default=2, show_default=True, help="Worker processes.")
@click.option("--on-error", type=click.Choice(ON_ERROR), default="fail", show_default=True,
              help="Bad notes stop the build, or are skipped and recorded in the cache.")
@click.option("--allow-empty", is_flag=True, help="Write a cache with no notes instead of failing (recorded).")
@click.option("--wait", is_flag=True, help="If another process is writing the same cache split, wait for it "
              "instead of failing.")
@click.option("--dask", envvar="DASK_SCHEDULER_ADDRESS", metavar="tcp://HOST:PORT|local:N",
              help="Write the chunks as tasks on this Dask cluster (default $DASK_SCHEDULER_ADDRESS), or on a "
                   "LocalCluster of N processes; sources and caches must be on storage every worker reaches. "
                   "Needs pip install -e '.[dask]'.")
@click.pass_obj
def prep_build_cache(obj: dict, sources: tuple[Path, ...], cache_dir: Location, features: tuple[str, ...],
                     split: str | None, families: str | None, exclude_families: str | None,
                     exclude_notes: str | None, seed: int,
                     workers: int, on_error: str, allow_empty: bool, wait: bool, dask: str | None) -> None:
    """Build zarr caches from NSynth SOURCES.

    A SOURCE is a split folder (examples.json + audio/), a .jsonwav.tar.gz, a .tfrecord,
    or a folder holding several of them (each split is built). An interrupted build resumes
    when run again; building another --feature adds it to the existing cache. One process at
    a time writes a cache split (<cache>/<split>.zarr.lock); a cache is only ever continued
    from the same source content and options.
    """
    from nsynth_prep.builder.pipeline import BuildConfig, build_cache
    from nsynth_prep.exclusions import read_note_list

    config = BuildConfig(tuple(dict.fromkeys(features)), _names(families), _names(exclude_families),
                         seed, workers, on_error, allow_empty=allow_empty, wait=wait, dask=dask or None,
                         exclude_notes=read_note_list(exclude_notes) if exclude_notes else None)
    for source in sources:
        for summary in build_cache(source, cache_dir, config, split, obj["progress"]):
            click.echo(summary.report())


@prep.command("verify")
@click.argument("caches", nargs=-1, required=True, type=CACHE)
@click.pass_obj
def prep_verify(obj: dict, caches: tuple[Location, ...]) -> None:
    """Check CACHES (<split>.zarr): completeness, metadata, shapes, dtypes, label ranges, and
    every chunk against the CRC-32C recorded at build time. Lists every problem; exit 1 if any."""
    from nsynth_prep.cache.verify import verify_cache

    failed = False
    for path in caches:
        problems = verify_cache(path, progress=obj["progress"])
        if problems:
            failed = True
            click.secho(f"{path}: {len(problems)} problem(s)", fg="red")
            for p in problems:
                click.echo(f"  {p}")
        else:
            click.secho(f"{path}: ok", fg="green")
    sys.exit(1 if failed else 0)


def _figure_formats(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    """``png,svg,pdf`` -> a tuple, checked here: a wrong format is an option error (exit 2)."""
    try:
        return None if value is None else vocab.figure_formats_of(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


FIGURE_FORMAT_OPTION = click.option(
    "--figure-format", "figure_formats", callback=_figure_formats, metavar="png,svg,pdf",
    help="Write every figure in these formats (comma-separated; default png); svg and pdf scale for papers.")


@main.command("train")
@click.option("--task", type=TASK, default="family", show_default=True,
              help="family: 10 classes (synth_lead dropped); source: acoustic/electronic/synthetic; both: one "
                   "network with a head for each, loss the sum; pitch: the MIDI pitches of train; velocity: 5 "
                   "classes; qualities: 10 yes/no labels (sigmoid, BCE); a comma list (family,source,pitch): "
                   "one network, a head for each. instrument is refused (NSynth's splits share no instrument).")
@click.option("--head-weights", help="Several heads: each head's loss weight, in order (e.g. 1,1,0.5). Default: 1 each.")
@click.option("--model", type=click.Choice(tuple(vocab.PRESETS)), default=vocab.DEFAULT_MODEL,
              show_default=True, help="mel-cnn (the best the project has; mel-cnn2 deeper) classifies a log-mel "
                                      "spectrogram made on the device from the trimmed feature. To reproduce the "
                                      "papers: cnn/cnn-reg (pooled feature) and lstm/blstm (framed), with their "
                                      "published settings.")
@click.option("--cache", "cache_dir", type=CACHE, default=DEFAULT_CACHE,
              show_default="data/cache", help="Folder (or s3://, file:// URL) holding train.zarr, valid.zarr and "
              "test.zarr.")
@click.option("--epochs", type=click.IntRange(min=1),
              help=f"Default: the model preset's ({vocab.preset_values('epochs')}).")
@click.option("--batch-size", type=click.IntRange(min=1),
              help=f"Default: the preset's ({vocab.preset_values('batch_size')}).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help=f"Adam learning rate. Default: the preset's ({vocab.preset_values('lr')}).")
@click.option("--l1", type=click.FloatRange(min=0),
              help=f"L1 penalty on conv kernels (cnn-reg; default {vocab.number(vocab.PRESETS['cnn-reg'].l1)}).")
@click.option("--l2", type=click.FloatRange(min=0),
              help=f"L2 penalty on conv kernels (cnn-reg; default {vocab.number(vocab.PRESETS['cnn-reg'].l2)}).")
@click.option("--device", type=click.Choice(vocab.DEVICES), default="auto", show_default=True)
@click.option("--amp", type=click.Choice(vocab.AMP), default="auto", show_default=True,
              help="Autocast on CUDA (auto = bf16); ignored on CPU.")
@click.option("--resident", type=click.Choice(vocab.RESIDENT), default="auto", show_default=True,
              help="Hold whole splits in device memory (auto: when they fit) or stream zarr chunks.")
@click.option("--workers", "num_workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader workers when streaming.")
@click.option("--patience", type=click.IntRange(min=0), default=0, show_default=True,
              help="Early stopping patience in epochs (0: off).")
@click.option("--compile", "compile_model", is_flag=True,
              help="torch.compile the model (slower start; see docs/benchmarks.md for when it pays).")
@click.option("--optimizer", type=click.Choice(vocab.OPTIMIZERS), help=PRESET_DEFAULT["optimizer"])
@click.option("--weight-decay", type=click.FloatRange(min=0), help=PRESET_DEFAULT["weight_decay"])
@click.option("--schedule", type=click.Choice(vocab.SCHEDULES),
              help=f"Learning-rate schedule over all steps. {PRESET_DEFAULT['schedule']}")
@click.option("--label-smoothing", type=click.FloatRange(min=0, max=1, max_open=True),
              help=PRESET_DEFAULT["label_smoothing"])
@click.option("--balance", type=click.Choice(vocab.BALANCE),
              help=f"loss: weight the cross-entropy by inverse train class frequency; sample: draw each epoch's "
                   f"notes class-balanced, with replacement. {PRESET_DEFAULT['balance']}")
@click.option("--gain-db", type=click.FloatRange(min=0, max=vocab.GAIN_DB_MAX),
              help=f"Augmentation: random gain in +-N dB per note. {PRESET_DEFAULT['gain_db']}")
@click.option("--shift", type=click.FloatRange(min=0, max=vocab.SHIFT_MAX),
              help=f"Augmentation: random time shift up to this fraction of the input. {PRESET_DEFAULT['shift']}")
@click.option("--freq-mask", type=click.IntRange(min=0),
              help=f"SpecAugment (mel- models): two frequency masks of up to N mel bands. {PRESET_DEFAULT['freq_mask']}")
@click.option("--time-mask", type=click.IntRange(min=0),
              help=f"SpecAugment (mel- models): two time masks of up to N frames. {PRESET_DEFAULT['time_mask']}")
@click.option("--mixup", type=click.FloatRange(min=0),
              help=f"Mixup with Beta(A, A) mixing weights (0: off). {PRESET_DEFAULT['mixup']}")
@click.option("--eq-db", type=click.FloatRange(min=0, max=vocab.EQ_DB_MAX),
              help=f"Robustness: random EQ, three bands of up to +-N dB (audio models). {PRESET_DEFAULT['eq_db']}")
@click.option("--noise-snr", type=click.FloatRange(min=0),
              help=f"Robustness: white noise at an SNR of N to N+{vocab.NOISE_SNR_SPAN} dB (audio models; 0: off). "
                   f"{PRESET_DEFAULT['noise_snr']}")
@click.option("--pitch-shift", type=click.FloatRange(min=0, max=vocab.PITCH_SHIFT_MAX),
              help=f"Robustness: pitch shift by resampling, up to +-N semitones (audio models). "
                   f"{PRESET_DEFAULT['pitch_shift']}")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--seeds", metavar="N,N,...", help="Train the same settings once per seed, into sibling folders "
              "(<out>-seed<N>, or each seed's default folder), then print the runs grouped: mean +- std.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder. Default: runs/<task>-<model>-<hash of the settings>, printed.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint (--epochs N, "
              "more, extends a finished run).")
@click.option("--init", "init", type=click.Path(exists=True, path_type=Path),
              help="Start from another run's weights (its folder: best.pt, or a checkpoint), e.g. fine-tune a family "
                   "run on --task source; layers that do not fit, and the output layer for other classes, start new.")
@click.option("--overwrite", is_flag=True, help="Replace the run --out holds (refused without this or --resume).")
@click.option("--tensorboard", is_flag=True, help="Log each epoch (losses, accuracies, lr, notes/s) and the test "
              "confusion matrix to <run>/tensorboard/ (pip install -e '.[tensorboard]').")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report (RUN/report/index.html) at the end.")
@FIGURE_FORMAT_OPTION
@click.pass_obj
def train_cmd(obj: dict, task: str, head_weights: str | None, model: str, cache_dir: Location, epochs: int | None, batch_size: int | None,
              lr: float | None, l1: float | None, l2: float | None, device: str, amp: str, resident: str,
              num_workers: int, patience: int, compile_model: bool, optimizer: str | None,
              weight_decay: float | None, schedule: str | None, label_smoothing: float | None, balance: str | None,
              gain_db: float | None, shift: float | None, freq_mask: int | None, time_mask: int | None,
              mixup: float | None, eq_db: float | None, noise_snr: float | None, pitch_shift: float | None,
              seed: int, seeds: str | None, out: Path | None, resume: bool, init: Path | None, overwrite: bool,
              tensorboard: bool, no_report: bool, figure_formats: tuple[str, ...] | None) -> None:
    """Train a model on <cache>/train.zarr, select on valid.zarr, score the best on test.zarr.

    Writes config.json, checkpoints (best.pt, last.pt), history.csv, metrics.json, figures/
    and the HTML report (report/index.html) to the run folder. A folder that holds a run is never overwritten unless --overwrite.
    Ctrl-C stops after saving nothing half-written and prints the command that resumes.

    Under torchrun (torchrun --nproc_per_node N --no-python nsynth train ...) it trains with
    DistributedDataParallel: --batch-size is per process, rank 0 writes the run folder.
    """
    if resume and overwrite:  # an option error (exit 2), said before the seconds that importing torch takes
        raise click.UsageError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    seed_list = _seed_list(seeds, seed)
    from nsynth_train.api import train_run, train_seeds

    options = dict(task=task, model=model, cache_dir=cache_dir, epochs=epochs, batch_size=batch_size, lr=lr, l1=l1,
                   l2=l2, device=device, amp=amp, resident=resident, num_workers=num_workers, patience=patience,
                   compile=compile_model, optimizer=optimizer, weight_decay=weight_decay, schedule=schedule,
                   label_smoothing=label_smoothing, balance=balance, gain_db=gain_db, shift=shift,
                   freq_mask=freq_mask, time_mask=time_mask, mixup=mixup, eq_db=eq_db, noise_snr=noise_snr,
                   pitch_shift=pitch_shift, head_weights=head_weights, init=None if init is None else str(init),
                   out=out, resume=resume, overwrite=overwrite,
                   progress=obj["progress"], tensorboard=tensorboard, figure_formats=figure_formats,
                   html_report=False if no_report else None)  # None: with the figures
    results = train_seeds(seed_list, **options) if seeds else [train_run(seed=seed, **options)]
    for result in results:
        if result["report"]:  # empty on torchrun's ranks other than 0
            click.echo(result["report"])


@main.command("eval")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--cache", "cache_dir", type=CACHE,
              help="Cache folder or URL (default: the one the run was trained on).")
@click.option("--split", default="test", show_default=True, help="Split to score: <cache>/<split>.zarr.")
@click.option("--device", type=click.Choice(vocab.DEVICES), default="auto", show_default=True,
              help="Where to run the model (auto: a GPU when there is one).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Where to write (default: the run).")
@FIGURE_FORMAT_OPTION
@click.pass_obj
def eval_cmd(obj: dict, run: Path, cache_dir: Location | None, split: str, device: str, out: Path | None,
             figure_formats: tuple[str, ...] | None) -> None:
    """Recompute metrics and figures of RUN (a run folder or a checkpoint) on any split, and say
    where the run came from (its config.json)."""
    from nsynth_train.api import eval_run

    result = eval_run(run, cache_dir, split, out, device, obj["progress"], figure_formats)
    if result["report"]:  # empty on torchrun's ranks other than 0
        click.echo(result["report"])


@main.command("predict")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.argument("audio", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True, help="Classes shown per head.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--device", type=click.Choice(vocab.DEVICES), default="auto", show_default=True)
def predict_cmd(run: Path, audio: tuple[Path, ...], top: int, as_json: bool, device: str) -> None:
    """Classify WAV files with RUN (a run folder or a checkpoint). AUDIO: WAV files (1 kHz to
    1 MHz, any channels, length and PCM/float format), folders of them, or NSynth split folders. Each file is
    mixed to mono, resampled to 16 kHz and cut or padded to 4 s, and says which it needed. On
    an NSynth split folder it ends with each head's accuracy and confusion counts."""
    import json

    from nsynth_train.predict import format_results, predict_files
    from nsynth_train.predict_score import format_scores, score_results

    results = predict_files(run, list(audio), top, device)
    click.echo(json.dumps(results, indent=1) if as_json else format_results(results))
    if not as_json and score_results(results):  # labelled files (an NSynth split): how right it was
        click.echo(f"\n{format_scores(score_results(results))}")


@main.command("report")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--split", help="Split to score (default: test, or the one an eval output scored).")
@click.option("--cache", "cache_dir", type=CACHE, help="Cache folder or URL (default: the run's).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (default: <run>/report, or report-<split> for another split).")
@click.option("--per-cell", type=click.IntRange(min=1), default=3, show_default=True,
              help="Notes listed, with their audio, per confusion-matrix cell: bounds the report's size.")
@click.option("--device", type=click.Choice(vocab.DEVICES), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a report already there.")
def report_cmd(target: Path, split: str | None, cache_dir: Location | None, out: Path | None, per_cell: int,
               device: str, overwrite: bool) -> None:
    """Write the listening error-analysis page of TARGET (a run folder, a checkpoint, or a folder
    that nsynth eval --out wrote): settings, learning curves, per-class metrics, a confusion matrix
    whose cells list their notes with audio players, waveforms and log-mels, the most confident
    errors and the notes nearest the decision boundary; one section per head. Static HTML: opens
    from disk, no network."""
    from nsynth_train.report import write_report

    click.echo(f"wrote {write_report(target, out, split, cache_dir, per_cell, device, overwrite)}")


@main.command("runs")
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path))
@click.option("--sort", "sort_by", metavar="COLUMN", help="Sort by this column (numbers highest first), e.g. "
              "'acc family'.")
@click.option("--no-group", is_flag=True, help="One row per run (default: runs that differ only in --seed are one "
              "row, mean +- std and n).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the rows as CSV (a grouped number: value, std, n).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table and the overlaid learning curves as a page here.")
def runs_cmd(folders: tuple[Path, ...], sort_by: str | None, no_group: bool, as_json: bool, as_csv: bool,
             html_out: Path | None) -> None:
    """Compare the runs under FOLDERS (default: runs/ and data/runs/, those that exist): model,
    task, feature, epochs, batch, lr, seed, test accuracy and macro-F1 per head, epochs run,
    train notes, notes/s, date, git commit."""
    from nsynth_train import runs_table

    found = folders or tuple(p for p in (Path("runs"), DATA_DIR / "runs") if p.is_dir()) or (Path("runs"),)
    rows = runs_table.table(found, group=not no_group, sort=sort_by)
    if html_out:
        html_out.write_text(runs_table.to_html(rows), encoding="utf-8")
    click.echo(runs_table.to_json(rows) if as_json else runs_table.to_csv(rows) if as_csv else runs_table.to_text(rows))


@main.command("export-model")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def export_model_cmd(run: Path, out: Path, overwrite: bool) -> None:
    """Write RUN (a run folder or checkpoint) to OUT as ONNX, front end included: it takes raw
    16 kHz audio, (batch, 64000) float32 in [-1, 1], and gives each head's probabilities; only
    onnxruntime is needed to run it. Recorded in the run folder's export.json. Needs pip install -e '.[onnx]'."""
    from nsynth_train.export_onnx import export_model, report

    click.echo(report(export_model(run, out, overwrite)))


@main.command("demo")
@click.option("--epochs", type=click.IntRange(min=1), default=vocab.DEMO_EPOCHS, show_default=True, help="mel-cnn epochs.")
@click.option("--notes-per-split", show_default="1200,200,200", callback=_check_notes_per_split,
              help="TRAIN,VALID,TEST notes of the synthetic corpus, made once in data/nsynth (to make "
                   "another size, remove data/nsynth and data/cache).")
@click.pass_obj
def demo_cmd(obj: dict, epochs: int, notes_per_split: str | None) -> None:
    """The whole tool on the embedded default: synthesize a corpus into data/ (once), build
    its caches, train mel-cnn on the family task (on CPU, or a GPU when there is one) into a
    new folder data/runs/demo-family-mel-cnn-N (earlier demos are kept), and say where the
    results and the report are."""
    # The one place that knows both stages: prep makes the data, training never imports the corpus makers.
    from nsynth_prep.corpus.demo import demo_caches
    from nsynth_train.api import demo_run

    caches, built = demo_caches(DATA_DIR, notes_per_split, obj["progress"])
    click.echo(f"{built}\n\n{demo_run(DATA_DIR, caches, epochs, obj['progress'])}")


@prep.command("export")
@click.argument("cache", type=CACHE)
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.pass_obj
def prep_export(obj: dict, cache: Location, out: Path, overwrite: bool) -> None:
    """Write CACHE (<split>.zarr) to one HDF5 file OUT: same arrays and attributes, gzip-compressed.
    Every chunk is checked against its build-time CRC-32C as it is copied."""
    from nsynth_prep.tools.export import export_hdf5

    export_hdf5(cache, out, obj["progress"], overwrite)
    click.echo(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")


@main.command("inspect")
@click.argument("cache", type=CACHE)
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write figures here: class balance, waveforms per family and source, pitch per family.")
@click.option("--note", "note_str", help="Show the labels of one note (and, with --plot, its features).")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def inspect_cmd(cache: Location, plot_dir: Path | None, note_str: str | None, as_json: bool) -> None:
    """Describe CACHE (<split>.zarr): features, how it was built, counts per family and source."""
    from nsynth_prep.tools.inspect import inspect_cache

    click.echo(inspect_cache(cache, note_str, plot_dir, as_json))


@main.command("audit")
@click.argument("caches", nargs=-1, required=True, type=CACHE)
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--strict", is_flag=True, help="Exit with status 1 when anything is found.")
@click.option("--silent-peak", default=1e-3, show_default=True, help="Peak |amplitude| below which a note is silent.")
@click.option("--clip-samples", default=16, show_default=True, help="Full-scale samples that make a note clipped.")
@click.option("--pitch-range", default="21,108", show_default=True, help="Usual MIDI pitch range LOW,HIGH.")
@click.option("--noise-flatness", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Spectral flatness of the sustained part above which a note is noise-like (white noise ~1, "
                   "a tone ~0).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the figure of the most noise-like note found (noise_like.png) here.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Worker processes checking chunks (the report is the same for any number).")
@click.pass_obj
def audit_cmd(obj: dict, caches: tuple[Location, ...], as_json: bool, strict: bool, silent_peak: float,
              clip_samples: int, pitch_range: str, noise_flatness: float, plot_dir: Path | None, workers: int) -> None:
    """Data-quality checks on CACHES: silent, clipped, noise-like and identical notes, odd
    pitches, NaN/inf, and (given several splits) instruments that leak between splits."""
    import json

    from nsynth_prep.tools.audit import AuditConfig, audit, plot_noise_like

    low, high = _int_pair(pitch_range, "--pitch-range")
    report = audit(list(caches), AuditConfig(silent_peak=silent_peak, clip_samples=clip_samples,
                                             pitch_range=(low, high), noise_flatness=noise_flatness),
                   workers, obj["progress"])
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.text())
    if plot_dir is not None:
        written = plot_noise_like(report, plot_dir)
        message = f"figure: {', '.join(map(str, written))}" if written else "no noise-like note: no figure written"
        click.echo(message, err=as_json)  # --json keeps stdout JSON
    sys.exit(1 if strict and report.problem_count() else 0)


def _int_pair(text: str, option: str) -> tuple[int, int]:
    """``"21,108"`` -> (21, 108); a clear option error otherwise."""
    try:
        low, high = (int(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected LOW,HIGH (two whole numbers), not {text!r}", param_hint=option) from None
    return low, high


def _seed_list(seeds: str | None, seed: int) -> list[int]:
    """``--seeds 0,1,2`` -> [0, 1, 2] (an option error unless whole numbers >= 0, without --seed)."""
    if seeds is None:
        return [seed]
    if seed != 0:
        raise click.UsageError("--seed and --seeds: pass one of them")
    try:
        found = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        found = []
    if not found or min(found) < 0 or len(set(found)) != len(found):
        raise click.BadParameter(f"expected distinct whole numbers >= 0 like 0,1,2, not {seeds!r}", param_hint="--seeds")
    return found


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else ()


if __name__ == "__main__":
    main()
