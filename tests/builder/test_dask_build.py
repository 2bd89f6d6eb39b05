"""Prep on a Dask cluster: the same bytes as a local build for every source format, a worker that
dies mid-build, a client killed mid-build and resumed, Ctrl-C, and every way ``--dask`` is refused.

One LocalCluster (2 processes of 1 thread, on 127.0.0.1) serves the in-process tests; the command
line tests start their own with ``--dask local:2``. Skipped without the dask extra.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from nsynth_prep.builder import dask_cluster as dask_build
from nsynth_prep.builder.blocks import ChunkJob
from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.corpus.synth import write_descriptors
from nsynth_prep.errors import ConfigError, SourceError, WavFormatError
from nsynth_prep.features import feature_spec
from nsynth_prep.readers.sources import discover
from nsynth_prep.readers.targz import SpoolReader

distributed = pytest.importorskip("distributed", reason=f"the Dask tests need the dask extra: {dask_build.INSTALL_HINT}")

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"jsonwav": "nsynth-train", "tfrecord": "nsynth-train.tfrecord", "targz": "nsynth-train.jsonwav.tar.gz"}


def cache_files(cache_dir: Path) -> dict[str, bytes]:
    """Every file under a cache folder, by relative path, but the writer lock (its holder's pid and time)."""
    return {str(p.relative_to(cache_dir)): p.read_bytes() for p in sorted(cache_dir.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def assert_same_files(got: Path, want: Path) -> None:
    a, b = cache_files(got), cache_files(want)
    assert sorted(a) == sorted(b)
    assert [name for name in a if a[name] != b[name]] == []


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(**dask_build.local_cluster_options(2)) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as c:
        yield c


def _settled(path: Path) -> Path:
    """``path`` with every file's mtime an hour back: a file modified in the last 200 ms is recorded with
    mtime -1 (see fingerprint.RACY_NS), which would make two builds a moment apart differ there."""
    past = time.time() - 3600
    for p in [path, *path.rglob("*")]:
        os.utime(p, (past, past))
    return path


@pytest.fixture(scope="module")
def sources(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The train split in each format (a copy of the session corpus, settled)."""
    out = tmp_path_factory.mktemp("sources")
    for name in SOURCES.values():
        (shutil.copytree if (corpus / name).is_dir() else shutil.copy2)(corpus / name, out / name)
    return _settled(out)


@pytest.fixture(scope="module")
def descriptor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A described synthetic corpus: notes rendered by the workers, ~7 ms each (train: 7 blocks of trimmed)."""
    out = tmp_path_factory.mktemp("desc")
    path = write_descriptors(out, {"train": 200, "valid": 10, "test": 10}, seed=0)["train"]
    _settled(out)
    return path


@pytest.fixture(scope="module")
def descriptor_local(descriptor: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The descriptor's train split built locally (trimmed, --workers 2): what every Dask build of it must equal."""
    out = tmp_path_factory.mktemp("desc-local")
    build_cache(descriptor, out, BuildConfig(features=("trimmed",), workers=2), progress=False)
    return out


# --- what a worker is sent -------------------------------------------------------------------


def test_parse_dask() -> None:
    assert dask_build.parse_dask("tcp://10.0.0.5:8786") == dask_build.ClusterSpec(address="tcp://10.0.0.5:8786")
    assert dask_build.parse_dask("local:3") == dask_build.ClusterSpec(local_workers=3)
    for bad, message in [("local:0", "at least 1 worker"), ("local:x", "expected a scheduler address"),
                         ("10.0.0.5:8786", "expected a scheduler address"), ("", "expected")]:
        with pytest.raises(ConfigError, match=message):
            BuildConfig(dask=bad)


def test_a_job_pickles_with_paths_not_descriptors(corpus: Path, tmp_path: Path) -> None:
    """Each source format's reader crosses to another process: a TFRecord reader that has read here
    arrives without this process's descriptor, reopens, and reads the same audio."""
    spec = feature_spec("trimmed")
    for fmt, name in SOURCES.items():
        catalog = discover(corpus / name)[0].scan([spec], "fail", tmp_path / fmt)
        index = np.arange(5)
        here = catalog.reader.read_features(index, [spec])["trimmed"]
        job = ChunkJob(tmp_path / "c.zarr", tmp_path / fmt, catalog.reader, index, (spec,), 32)
        copy = pickle.loads(pickle.dumps(job))
        if fmt == "tfrecord":
            assert copy.reader._fd is None and catalog.reader._fd is not None
        np.testing.assert_array_equal(copy.reader.read_features(index, [spec])["trimmed"], here, err_msg=fmt)


def test_without_dask_option_dask_is_not_imported(corpus: Path, tmp_path: Path) -> None:
    script = ("import sys, cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    proc = subprocess.run([sys.executable, "-c", script, "-q", "prep", "build-cache", str(corpus / "nsynth-test"),
                           "--cache", str(tmp_path), "--workers", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "DASK_SCHEDULER_ADDRESS": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed: import raises ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[dask\]'"), dask_build.connect("local:1"):
        pass


# --- on a cluster ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonwav", "tfrecord", "targz", "synth"])
def test_same_bytes_as_a_local_build(fmt: str, sources: Path, descriptor: Path, descriptor_local: Path,
                                     cluster: Any, tmp_path: Path) -> None:
    """Every file of the cache, zarr.json included, as a local build with the same --workers writes it."""
    source = descriptor if fmt == "synth" else sources / SOURCES[fmt]
    features = ("trimmed", "pooled") if fmt == "jsonwav" else ("trimmed",)  # with pooled: one block of 1024 rows
    got = build_cache(source, tmp_path / "dask", BuildConfig(features=features, workers=2,
                                                               dask=cluster.scheduler_address), progress=False)
    assert got[0].notes == (200 if fmt == "synth" else 60)
    if fmt == "synth":
        assert_same_files(tmp_path / "dask", descriptor_local)
    else:
        build_cache(source, tmp_path / "local", BuildConfig(features=features, workers=2), progress=False)
        assert_same_files(tmp_path / "dask", tmp_path / "local")


def test_a_worker_that_cannot_read_the_source_says_so(corpus: Path, client: Any, tmp_path: Path) -> None:
    """A .tar.gz's spool lives in the client's work folder: a worker without it names itself and the path."""
    spec = feature_spec("trimmed")
    (tmp_path / "c.zarr").mkdir()
    (tmp_path / "c.zarr" / "zarr.json").write_text("{}")
    job = ChunkJob(tmp_path / "c.zarr", tmp_path / "w", SpoolReader(tmp_path / "elsewhere" / "spool", np.arange(4)),
                   np.arange(4), (spec,), 32)
    runner = dask_build.DaskRunner(client, "test")
    with pytest.raises(SourceError, match=r"Dask worker tcp://127\.0\.0\.1:\d+ \(host .+\) cannot read .*elsewhere/"
                                          r"spool \(the \.tar\.gz spooled by the client.*every worker reaches"):
        runner.run(job, [0], lambda rows: None)


def test_bad_audio_found_by_a_task_stops_the_build_in_one_line(sources: Path, cluster: Any, tmp_path: Path) -> None:
    """The worker's own error (the file, what is wrong) reaches the client as raised there."""
    src = tmp_path / "nsynth-train"
    shutil.copytree(sources / SOURCES["jsonwav"], src)
    wav = sorted((src / "audio").glob("*.wav"))[7]
    wav.write_bytes(b"RIFX" + wav.read_bytes()[4:])
    config = BuildConfig(features=("trimmed",), dask=cluster.scheduler_address)
    with pytest.raises(WavFormatError, match=re.escape(str(wav))):
        build_cache(src, tmp_path / "c", config, progress=False)


class DieMidBlock(distributed.WorkerPlugin):  # type: ignore[misc]
    """Kills its worker process (as a crash or an OOM kill would) in the middle of a block: right
    after the cluster's first chunk is written and marked done, with the block's other chunks to
    come. The marker file makes it once; the Nanny then starts a new worker."""

    name = "nsynth-test-die-mid-block"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker: Any) -> None:
        from nsynth_prep.builder import blocks

        self.original = original = blocks.mark_done
        marker = self.marker

        def mark_then_die(*args: Any) -> None:
            original(*args)
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os._exit(1)

        blocks.mark_done = mark_then_die

    def teardown(self, worker: Any) -> None:
        from nsynth_prep.builder import blocks

        blocks.mark_done = self.original


@pytest.mark.slow  # kills Dask processes
def test_a_worker_dying_mid_block_is_retried(sources: Path, client: Any, cluster: Any, tmp_path: Path) -> None:
    marker = tmp_path / "died"
    client.register_plugin(DieMidBlock(str(marker)))
    source = sources / SOURCES["tfrecord"]
    features = ("trimmed", "framed")  # one block of 256 rows: 2 trimmed chunks and 1 framed
    try:
        build_cache(source, tmp_path / "dask", BuildConfig(features, workers=2, dask=cluster.scheduler_address),
                    progress=False)
    finally:
        client.unregister_worker_plugin(DieMidBlock.name)
    assert marker.exists()  # a worker did die
    build_cache(source, tmp_path / "local", BuildConfig(features, workers=2), progress=False)
    assert_same_files(tmp_path / "dask", tmp_path / "local")


class AlwaysDie(distributed.WorkerPlugin):  # type: ignore[misc]
    """Kills its worker whenever a block task starts: a block that no worker survives (an OOM kill, say)."""

    name = "nsynth-test-always-die"

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing" and "-block-" in str(key):
            os._exit(1)


@pytest.mark.slow  # kills Dask processes
def test_a_block_that_kills_every_worker_is_one_line(sources: Path, tmp_path: Path) -> None:
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(**{**dask_build.local_cluster_options(1), "silence_logs": logging.CRITICAL}) \
            as cluster, \
            distributed.Client(cluster) as client:
        client.register_plugin(AlwaysDie())
        config = BuildConfig(features=("trimmed",), dask=cluster.scheduler_address)
        with pytest.raises(ConfigError, match=r"Dask: block \d of .*train\.zarr killed the 1 worker it ran on "
                                              r"\(out of memory\?"):
            build_cache(sources / SOURCES["tfrecord"], tmp_path, config, progress=False)


@pytest.mark.slow  # kills Dask processes
def test_a_scheduler_lost_mid_build_is_one_line(descriptor: Path, descriptor_local: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduler process killed once the first block is written: the build stops in one line, and
    a local build (no --dask) resumes it to the bytes of an uninterrupted one."""
    monkeypatch.setattr(dask_build, "CONNECT_TIMEOUT", 5.0)
    file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    common = ["--no-dashboard", "--scheduler-file", str(file)]
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", *common], env=env, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--nthreads", "1",
                               "--host", "127.0.0.1", *common], env=env, stderr=subprocess.DEVNULL)
    done = tmp_path / "cache" / "train.zarr.build" / "done" / "trimmed"
    try:
        for _ in range(1000):
            if file.exists() and file.stat().st_size:
                break
            time.sleep(0.02)
        address = json.loads(file.read_text())["address"]

        def kill_the_scheduler() -> None:  # once the first block is written
            while not (done.is_dir() and any(done.iterdir())) and scheduler.poll() is None:
                time.sleep(0.01)
            scheduler.kill()

        threading.Thread(target=kill_the_scheduler, daemon=True).start()
        with pytest.raises(ConfigError, match=r"^Dask: lost the tasks of .*train\.zarr \((scheduler-connection-lost|"
                                              r"the connection to the scheduler closed)\); the chunks written stay, "
                                              r"and the same command resumes$"):
            build_cache(descriptor, tmp_path / "cache", BuildConfig(features=("trimmed",), workers=2, dask=address),
                        progress=False)
    finally:
        for proc in (scheduler, worker):
            proc.kill()
            proc.wait()
    assert 1 <= len(list(done.glob("*.json"))) < 7
    build_cache(descriptor, tmp_path / "cache", BuildConfig(features=("trimmed",), workers=2), progress=False)
    assert_same_files(tmp_path / "cache", descriptor_local)


# --- the command line: interrupted, killed, resumed, refused ----------------------------------


def _cli(*args: object) -> subprocess.Popen[str]:
    # Its own session, so that the test can kill the client with every process of its LocalCluster.
    # Ctrl-C at its default: a suite started in the background by a shell without job control
    # (`(make check &)`) runs with SIGINT ignored, which its children would inherit.
    return subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "-q", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_chunks(proc: subprocess.Popen[str], done: Path, at_least: int = 1) -> None:
    for _ in range(1200):
        if (done.is_dir() and len(list(done.glob("*.json"))) >= at_least) or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()



@pytest.mark.slow  # kills Dask processes
def test_kill_9_then_ctrl_c_then_resume(descriptor: Path, descriptor_local: Path, tmp_path: Path) -> None:
    """A client killed with -9 mid-build takes its LocalCluster with it and leaves an incomplete
    cache; a new client goes on from there, and Ctrl-C (to the whole process group, as a terminal
    sends it) closes it and its LocalCluster: one line, exit 130, no process left. A third client
    finishes the cache, byte for byte as a local build."""
    psutil = pytest.importorskip("psutil")  # a dependency of distributed
    args = ("prep", "build-cache", descriptor, "--cache", tmp_path / "dask", "--feature", "trimmed", "--workers", 2,
            "--dask")
    done = tmp_path / "dask" / "train.zarr.build" / "done" / "trimmed"
    for stop in ("kill -9", "ctrl-c"):  # on one worker: fewer processes to start on a 2-core test machine
        before = len(list(done.glob("*.json")))
        proc = _cli(*args, "local:1")
        _wait_for_chunks(proc, done, before + 1)  # this client has written chunks, and has more to write
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # the LocalCluster's worker process (and multiprocessing's resource tracker)
        if stop == "kill -9":
            proc.kill()  # the client alone: its workers see their Nanny gone and exit
            proc.communicate(timeout=60)
        else:
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 130 and err.strip().splitlines()[-1] == (
                "interrupted; the same command resumes where it stopped"), err
            assert "Traceback" not in err
        assert psutil.wait_procs(children, timeout=20)[1] == []  # nothing left running (or writing)
        assert len(list(done.glob("*.json"))) < 7  # stopped mid-build (7 blocks)

    proc = _cli(*args, "local:2")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert_same_files(tmp_path / "dask", descriptor_local)


def test_unreachable_scheduler_and_bad_values_are_one_line(corpus: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import cli

    monkeypatch.setattr(dask_build, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    base = ["prep", "build-cache", str(corpus / "nsynth-test"), "--cache", str(tmp_path)]
    for value, message in [("tcp://127.0.0.1:1", r"--dask tcp://127\.0\.0\.1:1: cannot reach the Dask scheduler"),
                           ("local:0", "a LocalCluster needs at least 1 worker"),
                           ("nowhere", "expected a scheduler address")]:
        result = CliRunner().invoke(cli.main, [*base, "--dask", value])
        assert result.exit_code == 1, result.output
        assert len(result.output.strip().splitlines()) == 1 and re.search(message, result.output), result.output
    # The environment variable is the option's default.
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    result = CliRunner().invoke(cli.main, base)
    assert result.exit_code == 1 and "cannot reach the Dask scheduler" in result.output
    assert not (tmp_path / "test.zarr").exists()  # refused before anything was written


def test_a_scheduler_without_workers_is_one_line(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks sent to a scheduler that has no worker would wait for ever: refused after a while."""
    import cli

    monkeypatch.setattr(dask_build, "WORKERS_TIMEOUT", 1)
    with distributed.LocalCluster(**{**dask_build.local_cluster_options(1), "n_workers": 0}) as empty:
        result = CliRunner().invoke(cli.main, ["prep", "build-cache", str(corpus / "nsynth-test"), "--cache",
                                               str(tmp_path), "--dask", empty.scheduler_address])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"error: --dask {empty.scheduler_address}: the scheduler has no workers (waited 1 s); start some "
        f"(dask worker {empty.scheduler_address}) and run this again"]
    assert not (tmp_path / "test.zarr").exists()
