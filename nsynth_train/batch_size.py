"""How many notes a step takes when the user did not say: a preset's batch size, made smaller
when the train split is too small for it to give enough optimizer steps an epoch.

The reference presets were tuned on NSynth's 289,205 train notes (batch 1024: 283 steps an
epoch). On a corpus of a few thousand notes the same batch gives 2 or 3 steps an epoch and the
model learns next to nothing in the epochs the preset runs; a smaller batch gives it the steps.
An explicit ``--batch-size`` is never changed (a warning names a better one).
"""

from __future__ import annotations

MIN_STEPS = 50  # fewer optimizer steps an epoch than this: learning stalls on small corpora
MIN_BATCH = 8  # never chosen below: batch-norm statistics and a step's gradient need a few notes


def steps_per_epoch(notes: int, batch_size: int, drop_last: bool) -> int:
    return notes // batch_size if drop_last else -(-notes // batch_size)


def fitting_batch(notes: int, batch_size: int, drop_last: bool) -> int:
    """The largest power of two, at most ``batch_size`` and at least :data:`MIN_BATCH`, that gives
    ``notes`` at least :data:`MIN_STEPS` steps an epoch; :data:`MIN_BATCH` when none does (a
    corpus under ``MIN_STEPS * MIN_BATCH`` notes); ``batch_size`` itself when it already does or
    is at most ``MIN_BATCH``."""
    if batch_size <= MIN_BATCH or steps_per_epoch(notes, batch_size, drop_last) >= MIN_STEPS:
        return batch_size
    b = 1 << (batch_size.bit_length() - 1)  # the power of two at or below batch_size
    while b > MIN_BATCH and steps_per_epoch(notes, b, drop_last) < MIN_STEPS:
        b //= 2
    return max(b, MIN_BATCH)


def _steps_text(steps: int) -> str:
    return f"{steps} optimizer step{'' if steps == 1 else 's'}"


def auto_batch_line(notes: int, model: str, preset_batch: int, chosen: int, drop_last: bool) -> str:
    """The one line that says a smaller batch than the preset's was taken, and why."""
    return (f"batch size {chosen}, not {model}'s {preset_batch}: {notes:,} train notes would give only "
            f"{_steps_text(steps_per_epoch(notes, preset_batch, drop_last))} an epoch at {preset_batch}, "
            f"{steps_per_epoch(notes, chosen, drop_last)} at {chosen} (--batch-size N chooses)")


def small_corpus_warning(notes: int, batch_size: int, drop_last: bool) -> str | None:
    """The warning when an epoch at ``batch_size`` is fewer than :data:`MIN_STEPS` optimizer steps,
    naming a batch size that gives enough (or saying the corpus is too small for any); None when
    the epoch is long enough."""
    steps = steps_per_epoch(notes, batch_size, drop_last)
    if steps >= MIN_STEPS:
        return None
    text = (f"an epoch of {notes:,} notes at batch size {batch_size} is only {_steps_text(steps)}; "
            f"models learn little from fewer than ~{MIN_STEPS}")
    better = fitting_batch(notes, batch_size, drop_last)
    enough = steps_per_epoch(notes, better, drop_last)
    if better < batch_size and enough >= MIN_STEPS:
        return f"{text}: --batch-size {better} gives {enough}"
    if better < batch_size:
        return f"{text}: --batch-size {better} gives {enough}; more notes would help more"
    return f"{text}; a corpus this small needs more notes (or more --epochs)"
