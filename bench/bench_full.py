"""NSynth at its full size on one machine, and a smaller size of the same mix beside it, in one run:
what every step of the tool costs at 305,979 notes, without real NSynth.

    python3 bench/bench_full.py --notes 32000,full --out /work/bench-full   # the published table
    python3 bench/bench_full.py --notes 2000 --out /tmp/bf                  # a few minutes

For each size, a synthetic corpus with NSynth's split sizes scaled to it (train 289,205, valid
12,678, test 4,096 at ``full``) is *described* (``write_descriptors``: no audio is written) and
``build-cache`` renders each note as it computes the features, in ``--workers`` processes. Then,
each step in its own process, watched by this one:

1. build train (``pooled`` + ``framed``, + ``trimmed`` when the disk has room: the need is printed),
   killed with SIGKILL (the whole process group: a crash) at each ``--kills`` fraction of its chunks
   and resumed by running the same command again; then valid and test, uninterrupted;
2. ``prep verify`` of the three splits, ``audit`` of the three;
3. one epoch of each feature streamed through the trainer's loader (``Split``, ``--resident no``),
   and one evaluation pass (``predict``) of the feature's preset, untrained, on test.

Per step: wall time (for a stream or eval step, the pass itself in brackets: the rest is its
process starting, importing torch and opening the cache), notes/s (of the pass itself), the CPU
time of the step's processes (user + system: what the work costs whatever else runs), the steal
(the share of the machine's CPU time its hypervisor gave to other guests: a wall time measured
under steal is that much longer), the peak RSS of every process of the step (the largest, and the sum
of the processes' peaks), the disk the caches use, the size of train's ``zarr.json`` and the
number of files. After the resumed build, the rows that were being written at each kill (the
first ``--recheck`` blocks of 1,024 rows without done marks) are computed again in this process
and every chunk of them compared with the cache, byte for byte (CRC-32C), and every chunk is
checked by ``verify``; with ``--reference`` an uninterrupted build of train is made beside
it and every chunk's checksum compared. Ratios between the largest and smallest size close the
report (peak RSS within 1.5x, per-note build time within 1.3x). Results: ``OUT/results.md``,
``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NSYNTH = {"train": 289_205, "valid": 12_678, "test": 4_096}
FULL = sum(NSYNTH.values())  # 305,979
PRESET_OF = {"pooled": "cnn", "framed": "lstm", "trimmed": "mel-cnn"}
ROW_BYTES = {"pooled": 2048 * 4, "framed": 16_000 * 2, "trimmed": 51_200 * 2}  # as stored, uncompressed


def split_sizes(notes: int) -> dict[str, int]:
    """NSynth's three splits scaled to ``notes`` in all (valid and test at least 16 notes each)."""
    if notes >= FULL:
        return dict(NSYNTH)
    valid = max(16, round(NSYNTH["valid"] * notes / FULL))
    test = max(16, round(NSYNTH["test"] * notes / FULL))
    return {"train": notes - valid - test, "valid": valid, "test": test}


# --- watching a step's processes ------------------------------------------------------------------


def _session_pids(sid: int) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[3]) == sid:  # field 6: the session id
                pids.append(int(d))
    return pids


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process so far, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # fields 14 and 15: utime, stime


def _machine_ticks() -> tuple[int, int]:
    """(steal, all) clock ticks of every CPU so far: steal is time the hypervisor gave to others."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


def _kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Step:
    """A command run in its own session; every process of the session sampled for its peak RSS
    (``VmHWM``) while it runs. ``until(f)`` kills the whole session with SIGKILL once ``f()`` is true."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.cmd, self.log = cmd, log
        self.peaks: dict[int, int] = {}  # pid -> peak RSS in KiB (VmHWM: every page, file-backed ones too)
        self.anon: dict[int, int] = {}  # pid -> the largest anonymous RSS sampled, KiB (not maps of files)
        self.ticks: dict[int, int] = {}  # pid -> its CPU time at the last sample (a killed process's is lost after it)
        self.killed = False

    def run(self, until: Any = None, poll: float = 0.02) -> float:
        t = time.perf_counter()
        self.started = time.strftime("%H:%M:%S", time.gmtime())
        machine = _machine_ticks()
        with self.log.open("a") as out:
            proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
            stop = threading.Event()
            sampler = threading.Thread(target=self._sample, args=(proc.pid, stop), daemon=True)
            sampler.start()
            while proc.poll() is None:
                if until is not None and until():
                    os.killpg(proc.pid, signal.SIGKILL)
                    self.killed = True
                    proc.wait()
                    break
                time.sleep(poll)
            stop.set()
            sampler.join()
        self.seconds = time.perf_counter() - t
        steal, total = (b - a for a, b in zip(machine, _machine_ticks(), strict=True))
        self.steal = steal / total if total else 0.0
        self.returncode = proc.returncode
        if not self.killed and proc.returncode:
            sys.exit(f"bench_full: {' '.join(self.cmd)} failed ({proc.returncode}); see {self.log}")
        return self.seconds

    def _sample(self, sid: int, stop: threading.Event) -> None:
        while not stop.is_set():
            for pid in _session_pids(sid):
                self.peaks[pid] = max(self.peaks.get(pid, 0), _kib(pid, "VmHWM"))
                self.anon[pid] = max(self.anon.get(pid, 0), _kib(pid, "RssAnon"))
                self.ticks[pid] = max(self.ticks.get(pid, 0), _cpu_ticks(pid))
            stop.wait(0.1)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of every process of the step, as last sampled."""
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")

    def memory(self) -> tuple[float, float, int, float]:
        """(largest peak RSS, sum of the peaks) in MiB, the number of processes seen, and the largest
        anonymous RSS sampled in MiB (RSS less the pages of mapped files, which the kernel can drop)."""
        return (max(self.peaks.values(), default=0) / 1024, sum(self.peaks.values()) / 1024, len(self.peaks),
                max(self.anon.values(), default=0) / 1024)


def disk(caches: Path) -> dict[str, Any]:
    """Bytes used under ``caches`` (allocated blocks), files, and train's zarr.json size."""
    used = files = 0
    for p in caches.rglob("*"):
        if p.is_file():
            files += 1
            used += p.stat().st_blocks * 512
    meta = caches / "train.zarr" / "zarr.json"
    return {"disk_bytes": used, "files": files, "zarr_json_bytes": meta.stat().st_size if meta.exists() else 0}


# --- the steps ------------------------------------------------------------------------------------


def done_marks(work: Path) -> int:
    return sum(1 for _ in (work / "done").glob("*/*.json")) if (work / "done").exists() else 0


def first_new_chunk(caches: Path, features: tuple[str, ...], started_ns: int) -> float | None:
    """Seconds from ``started_ns`` (wall clock) to the oldest feature chunk of the train cache
    written since, or None.

    Read from the chunk files' modification times once the run has ended: the done marks are
    gone once a build finishes (its work folder is removed), and a run that writes its last chunks
    and exits between two looks of a poll loop would not be timed. A resumed run rewrites the
    chunks of a block that was partly written before the kill, so its first write may be such a
    chunk: that counts too."""
    root = caches / "train.zarr"
    times = (p.stat().st_mtime_ns for f in features for p in (root / f / "c").rglob("*") if p.is_file())
    new = [ns for ns in times if ns >= started_ns]
    return (min(new) - started_ns) / 1e9 if new else None


def build_train(corpus: Path, caches: Path, features: tuple[str, ...], workers: int, kills: list[float],
                log: Path) -> tuple[list[Step], list[dict[str, Any]]]:
    """The train build, killed at each fraction of its chunk marks and resumed; the steps and what
    each kill left (marks, and the blocks not yet marked: those being written)."""
    from nsynth_prep.features import feature_spec

    n = split_sizes_of(corpus)["train"]
    total = sum(math.ceil(n / feature_spec(f).chunk_rows) for f in features)
    work = caches / "train.zarr.build"
    cmd = [sys.executable, "cli.py", "-q", "prep", "build-cache", str(corpus / "nsynth-train.synth.json"),
           "--cache", str(caches), "--workers", str(workers)] + [a for f in features for a in ("--feature", f)]
    steps: list[Step] = []
    at_kill: list[dict[str, Any]] = []
    first_marks: list[float | None] = []  # per segment: seconds to its first chunk written (a resume's start-up)
    for goal in [max(1, int(f * total)) for f in kills] + [None]:

        def until(goal: int | None = goal) -> bool:
            return goal is not None and done_marks(work) >= goal

        step, started_ns = Step(cmd, log), time.time_ns()
        step.run(until=until)
        steps.append(step)
        first_marks.append(first_new_chunk(caches, features, started_ns))
        if not step.killed:
            break  # finished (a kill point it reached before this process could see it is skipped)
        marked = {d.name: {int(q.stem) for q in d.glob("*.json")} for d in (work / "done").iterdir() if d.is_dir()}
        at_kill.append({"marks": done_marks(work), "of": total, "seconds": step.seconds,
                        "unmarked": {feat: sorted(set(range(math.ceil(n / feature_spec(feat).chunk_rows)))
                                                  - marked.get(feat, set()))[:64] for feat in features}})
    for step, first_mark in zip(steps, first_marks, strict=True):
        step.first_mark_s = first_mark  # type: ignore[attr-defined]
    return steps, at_kill


def split_sizes_of(corpus: Path) -> dict[str, int]:
    return json.loads((corpus / "nsynth-train.synth.json").read_text())["notes_per_split"]


def recheck(corpus: Path, caches: Path, at_kill: list[dict[str, Any]], features: tuple[str, ...],
            per_kill: int) -> dict[str, Any]:
    """The first ``per_kill`` blocks of rows not written at each kill (those the workers had in
    flight) computed again here, every feature from the same audio, and each of their chunks
    compared with the cache's bytes and its recorded checksum."""
    from nsynth_prep.builder.pipeline import order_rows
    from nsynth_prep.cache import format as cache
    from nsynth_prep.features import feature_spec
    from nsynth_prep.readers.sources import discover

    src = discover(corpus / "nsynth-train.synth.json")[0]
    specs = [feature_spec(f) for f in features]
    block = max(s.chunk_rows for s in specs)  # the build's block: every chunk of it has one writer
    catalog = src.scan(specs, "fail", caches / "recheck-spool")
    order = order_rows(catalog.labels, 0)
    c = cache.open_cache(caches / "train.zarr")
    checked, differ = 0, []
    for k in at_kill:
        blocks = sorted({chunk * s.chunk_rows // block for s in specs for chunk in k["unmarked"][s.name]})[:per_kill]
        for b in blocks:
            rows = order[b * block : (b + 1) * block]
            again = catalog.reader.read_features(rows, specs)
            for s in specs:
                for i in range(0, len(rows), s.chunk_rows):
                    chunk = (b * block + i) // s.chunk_rows
                    stored = cache.read(c.array(s.name), slice(b * block + i, b * block + min(len(rows), i + s.chunk_rows)))
                    crc = cache.checksum(stored)
                    if crc != cache.checksum(again[s.name][i : i + s.chunk_rows]) or crc != c.feature(s.name).checksums[chunk]:
                        differ.append(f"{s.name} chunk {chunk}")
                    checked += 1
    return {"chunks_recomputed": checked, "differ": differ}


def array_checksums(path: Path) -> dict[str, str]:
    """One checksum per feature: the CRC-32C of its chunks' recorded checksums, in order (each of
    which ``verify`` checks against the bytes)."""
    from nsynth_prep.cache import format as cache

    c = cache.open_cache(path)
    return {f: cache.checksum(__import__("numpy").frombuffer("".join(c.feature(f).checksums).encode(), "uint8"))
            for f in sorted(c.meta.features)}


def stream_step(caches: Path, feature: str, evaluate: bool, result: Path) -> None:
    """In a step's process: one epoch of train's ``feature`` through the loader, or (``evaluate``)
    one evaluation pass of the feature's preset, untrained, over test; its figures to ``result``."""
    import torch

    from nsynth_prep.cache.format import cache_path
    from nsynth_train.config import TrainConfig
    from nsynth_train.evaluate import predict
    from nsynth_train.models import build_model
    from nsynth_train.splits import Split
    from nsynth_train.tasks import get_task

    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = TrainConfig(model=PRESET_OF[feature], cache_dir=str(caches), device="cpu", resident="no").resolved()
    task = get_task(config.task)
    t = time.perf_counter()
    split = Split(cache_path(caches, "test" if evaluate else "train"), config, task, torch.device("cpu"), shuffle=not evaluate)
    start = time.perf_counter() - t
    rows = 0
    if evaluate:
        model = build_model(config.model, task.num_classes)
        rows = len(predict(model, split, None)[1])
    else:
        for x, _, _ in split.batches(0, drop_last=False):
            rows += len(x)
    result.write_text(json.dumps({"rows": rows, "open_s": start, "seconds": time.perf_counter() - t}))


# --- one size, then the report ----------------------------------------------------------------------


def row(name: str, steps: list[Step], notes: int, caches: Path, **extra: Any) -> dict[str, Any]:
    largest = max(st.memory()[0] for st in steps)
    total = max(st.memory()[1] for st in steps)
    seconds = sum(st.seconds for st in steps)
    work = extra.get("inner_s", seconds)  # a stream or eval step's own time, without its process's start-up
    r = {"step": name, "seconds": seconds, "notes": notes, "notes_per_s": notes / work if work else 0.0,
         "peak_rss_mib": largest, "peak_rss_sum_mib": total, "processes": max(st.memory()[2] for st in steps),
         "anon_rss_mib": max(st.memory()[3] for st in steps), "started": steps[0].started,
         "cpu_s": sum(st.cpu_seconds() for st in steps),
         "steal": sum(st.steal * st.seconds for st in steps) / seconds if seconds else 0.0,
         **disk(caches), **extra}
    print(line(r), flush=True)
    return r


def one_size(out: Path, notes: int, workers: int, kills: list[float], trimmed: str, reference: bool,
             per_kill: int) -> dict[str, Any]:
    from nsynth_prep.corpus.synth import write_descriptors

    sizes = split_sizes(notes)
    base = out / f"notes-{notes}"
    corpus, caches, log = base / "corpus", base / "caches", base / "steps.log"
    shutil.rmtree(base, ignore_errors=True)  # a rerun measures from scratch
    caches.mkdir(parents=True)
    write_descriptors(corpus, sizes)
    need = sum(sizes.values()) * ROW_BYTES["trimmed"]
    free = shutil.disk_usage(caches).free
    room = trimmed == "yes" or (trimmed == "auto" and free > need * 1.1 + (2 << 30))
    features = ("pooled", "framed", "trimmed") if room else ("pooled", "framed")
    print(f"\n## {sum(sizes.values()):,} notes (train {sizes['train']:,}, valid {sizes['valid']:,}, test "
          f"{sizes['test']:,}); trimmed needs {need / 2**30:.1f} GiB, {free / 2**30:.0f} GiB free: "
          f"{'built' if room else 'not built'}", flush=True)
    rows: list[dict[str, Any]] = []
    steps, at_kill = build_train(corpus, caches, features, workers, kills, log)
    rows.append(row("build train", steps, sizes["train"], caches, kills=len(at_kill), resumes=len(steps) - 1,
                    segments_s=[st.seconds for st in steps],
                    first_mark_s=[getattr(st, "first_mark_s", None) for st in steps]))
    for split in ("valid", "test"):
        st = Step([sys.executable, "cli.py", "-q", "prep", "build-cache", str(corpus / f"nsynth-{split}.synth.json"),
                   "--cache", str(caches), "--workers", str(workers)] + [a for f in features for a in ("--feature", f)], log)
        st.run()
        rows.append(row(f"build {split}", [st], sizes[split], caches))
    zarrs = [str(caches / f"{s}.zarr") for s in ("train", "valid", "test")]
    identity: dict[str, Any] = {"array_checksums": array_checksums(caches / "train.zarr")}
    t = time.perf_counter()
    identity |= recheck(corpus, caches, at_kill, features, per_kill)
    identity["recheck_s"] = time.perf_counter() - t
    if reference:
        ref = base / "reference"
        st = Step([sys.executable, "cli.py", "-q", "prep", "build-cache", str(corpus / "nsynth-train.synth.json"),
                   "--cache", str(ref), "--workers", str(workers)] + [a for f in features for a in ("--feature", f)], log)
        st.run()
        identity["reference_identical"] = array_checksums(ref / "train.zarr") == identity["array_checksums"]
        shutil.rmtree(ref)
    for name, cmd in (("verify", ["prep", "verify", *zarrs]), ("audit", ["audit", "--json", *zarrs])):
        st = Step([sys.executable, "cli.py", "-q", *cmd], log)
        st.run()
        rows.append(row(name, [st], sum(sizes.values()), caches))
    for feature in features:
        for evaluate in (False, True):
            result = base / f"{feature}-{'eval' if evaluate else 'stream'}.json"
            st = Step([sys.executable, __file__, "--step", feature, "--caches", str(caches), "--result", str(result)]
                      + (["--evaluate"] if evaluate else []), log)
            st.run()
            got = json.loads(result.read_text())
            rows.append(row(f"{'eval' if evaluate else 'stream'} {feature} ({PRESET_OF[feature] if evaluate else 'loader'})",
                            [st], got["rows"], caches, open_s=got["open_s"], inner_s=got["seconds"]))
    return {"notes": sum(sizes.values()), "sizes": sizes, "features": features, "trimmed_need_bytes": need,
            "rows": rows, "kills": at_kill, "identity": identity, "load_end": os.getloadavg()[0]}


def line(r: dict[str, Any]) -> str:
    inner = f" ({r['inner_s']:,.2f} s)" if "inner_s" in r else ""
    return (f"| {r['step']} | {r['seconds']:,.1f} s{inner} | {r['notes']:,} | {r['notes_per_s']:,.0f}/s | "
            f"{r['cpu_s']:,.1f} s | {r['steal']:.0%} | {r['peak_rss_mib']:,.0f} MiB | {r['anon_rss_mib']:,.0f} MiB | {r['peak_rss_sum_mib']:,.0f} MiB ({r['processes']}) | "
            f"{r['disk_bytes'] / 2**30:,.2f} GiB | {r['zarr_json_bytes']:,} B | {r['files']:,} |")


HEADER = ["| step | wall | notes | notes/s | CPU | steal | peak RSS, largest | anonymous RSS, largest | peak RSS, sum (processes) "
          "| disk | train zarr.json | files |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]


def report(sizes: list[dict[str, Any]]) -> str:
    text = []
    for s in sizes:
        ident = s["identity"]
        text += ["", f"### {s['notes']:,} notes ({', '.join(f'{k} {v:,}' for k, v in s['sizes'].items())}), "
                     f"features {', '.join(s['features'])}", "", *HEADER, *(line(r) for r in s["rows"]), ""]
        build = s["rows"][0]
        resumed = [f"{x:.1f} s" if x is not None else "-" for x in build["first_mark_s"][1:]]  # its first chunk written
        text.append(f"train build killed {len(s['kills'])} times (SIGKILL to every process of the build, at " + ", ".join(
            f"{k['marks']} of {k['of']} chunks" for k in s["kills"]) + "); its runs took "
            + ", ".join(f"{x:.1f} s" for x in build["segments_s"]) + "; each resume wrote its first chunk after "
            + ", ".join(resumed) + f" (the first run: {build['first_mark_s'][0] or 0:.1f} s). The rows in flight at the "
            f"kills computed again ({ident['chunks_recomputed']} chunks, {ident['recheck_s']:.0f} s): "
            f"{'all identical' if not ident['differ'] else 'DIFFER: ' + ', '.join(ident['differ'])}"
            + ("" if "reference_identical" not in ident else
               f"; an uninterrupted build: {'identical' if ident['reference_identical'] else 'DIFFERENT'} checksums")
            + ". Array checksums: " + ", ".join(f"{k} {v}" for k, v in ident["array_checksums"].items()) + ".")
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        b0, b1 = small["rows"][0], big["rows"][0]
        mem = max(r["peak_rss_mib"] for r in big["rows"]) / max(r["peak_rss_mib"] for r in small["rows"])
        build_mem = b1["peak_rss_mib"] / b0["peak_rss_mib"]
        rate = (b1["seconds"] / b1["notes"]) / (b0["seconds"] / b0["notes"])
        cpu = (b1["cpu_s"] / b1["notes"]) / (b0["cpu_s"] / b0["notes"])
        text += ["", f"{big['notes']:,} against {small['notes']:,} notes: peak RSS of the largest process {mem:.2f}x "
                     f"over all steps (bound 1.5x), {build_mem:.2f}x in the train build; build time per train note "
                     f"{rate:.2f}x (bound 1.3x), CPU time per train note {cpu:.2f}x (steal: {b0['steal']:.0%} and "
                     f"{b1['steal']:.0%} of the machine's CPU time during the two builds)."]
    return "\n".join(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", default="32000,full", help="comma-separated sizes (all splits together); "
                    f"full = NSynth's {FULL:,}")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "full")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="build processes (default: every core)")
    ap.add_argument("--kills", default="0.33,0.67", help="fractions of train's chunks at which its build is killed")
    ap.add_argument("--trimmed", choices=("auto", "yes", "no"), default="auto", help="auto: when the disk has room")
    ap.add_argument("--reference", action="store_true", help="also build train uninterrupted and compare")
    ap.add_argument("--recheck", type=int, default=2, help="blocks of rows (1,024 notes) not written at each kill "
                    "that are computed again and compared (default 2: as many as 2 workers have in flight)")
    ap.add_argument("--step", help=argparse.SUPPRESS)  # internal: a stream/eval step's own process
    ap.add_argument("--caches", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--evaluate", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        stream_step(args.caches, args.step, args.evaluate, args.result)
        return
    notes = [FULL if n == "full" else int(n) for n in args.notes.split(",") if n]
    kills = [float(k) for k in args.kills.split(",") if k]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    head = (f"bench_full {started}, {os.cpu_count()} cores, {args.workers} build workers, load average "
            f"{os.getloadavg()[0]:.2f} at the start")
    print(f"# {head}\n" + "\n".join(HEADER), flush=True)
    sizes = [one_size(args.out, n, args.workers, kills, args.trimmed, args.reference, args.recheck) for n in notes]
    text = head + f", {os.getloadavg()[0]:.2f} at the end\n" + report(sizes)
    print("\n" + text)
    (args.out / "results.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps({"started": started, "workers": args.workers, "sizes": sizes},
                                                      indent=1))


if __name__ == "__main__":
    main()
