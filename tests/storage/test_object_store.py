"""Caches on object storage: a real S3 server (moto's, on 127.0.0.1, started and stopped here).

Build, verify (and verify catching a tampered or deleted chunk object), inspect, train streaming
from s3://, a build killed with SIGKILL then resumed to the same bytes as an uninterrupted one,
the lease lock refusing a second writer and taking over a dead one, clear one-line errors, and
file:// URLs through the same code path.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("s3fs", reason="the object-store tests need s3fs and moto: pip install -e '.[test]'")
moto_server = pytest.importorskip("moto.server", reason="the object-store tests need moto[server]: "
                                                        "pip install -e '.[test]'")

from click.testing import CliRunner  # noqa: E402
from kill_scripts import KILLER, SPOOL_KILLER  # noqa: E402  kill -9 after one block; while spooling

import cli  # noqa: E402
from nsynth_prep.builder.pipeline import BuildConfig, build_cache  # noqa: E402
from nsynth_prep.cache import format as cache  # noqa: E402
from nsynth_prep.cache.verify import verify_cache  # noqa: E402
from nsynth_prep.errors import CacheError, LockedError, StorageError  # noqa: E402
from nsynth_prep.storage import store  # noqa: E402
from nsynth_prep.storage.lock import exclusive  # noqa: E402

BUCKET = "nsynth-test"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A moto S3 server on 127.0.0.1 (port chosen by the OS), the AWS_* variables pointing at it
    (so botocore, s3fs and every subprocess find it as they would a real endpoint), a bucket."""
    import s3fs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        mp.setenv("NSYNTH_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))  # local spools of remote builds
        s3fs.S3FileSystem.clear_instance_cache()  # built before these variables were set
        fs = s3fs.S3FileSystem(use_listings_cache=False)  # sees what other instances and processes write
        fs.mkdir(BUCKET)
        yield fs
        _close_sessions(s3fs.S3FileSystem)
    server.stop()


def _close_sessions(cls: Any) -> None:
    """Close the HTTP sessions of every s3fs instance of this process before dropping them (an
    unclosed aiohttp session warns when collected). zarr's FsspecStore runs its asynchronous
    instances in zarr's own event loop, so their sessions are closed there."""
    from zarr.core.sync import sync

    for inst in list(cls._cache.values()):
        if getattr(inst, "_s3", None) is None:
            continue
        if inst.asynchronous:
            sync(inst._s3.__aexit__(None, None, None))
        else:
            cls.close_session(inst.loop, inst._s3)
    cls.clear_instance_cache()


@pytest.fixture(scope="module")
def built(s3: Any, corpus: Path) -> str:
    """s3://.../cache with train, valid and test built (pooled) through the command line."""
    url = f"s3://{BUCKET}/cache"
    for split in ("train", "valid", "test"):
        _cli("-q", "prep", "build-cache", str(corpus / f"nsynth-{split}"), "--cache", url, "--workers", "2")
    return url


def _cli(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli.main, list(args))
    assert (result.exit_code == 0) == ok, result.output + repr(result.exception)
    return result.output


def _aged(source: Path) -> None:
    """Wait until the source's files are older than the fingerprint's racy window: younger ones
    are recorded as untrusted (mtime -1), so two builds right after the corpus was written could
    record different mtimes."""
    newest = max(p.stat().st_mtime for p in source.rglob("*"))
    time.sleep(max(0.0, newest + 0.3 - time.time()))


def _objects(fs: Any, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` (without the s3://), by its key below it, with its bytes."""
    return {key[len(prefix) + 1 :]: fs.cat_file(key) for key in fs.find(prefix)}


def test_build_verify_inspect_on_s3(built: str, s3: Any, tmp_path: Path) -> None:
    keys = s3.find(f"{BUCKET}/cache")
    assert f"{BUCKET}/cache/train.zarr/zarr.json" in keys
    # Nothing of the build is left behind: its work folder and lease go with its end.
    assert not [k for k in keys if ".zarr.build/" in k or ".zarr.lock/" in k]
    out = _cli("prep", "verify", *(f"{built}/{s}.zarr" for s in ("train", "valid", "test")))
    assert out.count(": ok") == 3
    out = _cli("inspect", f"{built}/train.zarr")
    assert out.startswith(f"{built}/train.zarr: train split, 60 notes")
    info = json.loads(_cli("inspect", "--json", f"{built}/valid.zarr"))
    assert info["notes"] == 30 and info["disk_bytes"] > 30 * 2048 * 4
    assert "problem" in _cli("audit", f"{built}/train.zarr")
    assert "wrote" in _cli("-q", "prep", "export", f"{built}/test.zarr", str(tmp_path / "test.h5"))


def test_train_streams_from_s3(built: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = _cli("-q", "train", "--model", "cnn", "--cache", built, "--epochs", "1", "--batch-size", "16", "--resident", "no",
               "--device", "cpu", "--out", str(run))
    assert "test" in out
    config = json.loads((run / "config.json").read_text())
    assert json.dumps(config).count(built) >= 1  # the URL is recorded as given, not made a local path
    assert (run / "best.pt").exists()
    out = _cli("-q", "eval", str(run), "--cache", built, "--split", "valid", "--device", "cpu",
               "--out", str(tmp_path / "eval"))
    assert "valid" in out and json.loads((tmp_path / "eval" / "metrics-valid.json").read_text())["cache"] == \
        f"{built}/valid.zarr"


def test_verify_catches_a_tampered_and_a_deleted_chunk_object(s3: Any, corpus: Path) -> None:
    url = f"s3://{BUCKET}/tamper"
    build_cache(corpus / "nsynth-valid", url, BuildConfig(features=("pooled", "trimmed")), progress=False)
    path = f"{BUCKET}/tamper/valid.zarr"
    assert verify_cache(f"{url}/valid.zarr") == []
    plain = bytearray(s3.cat_file(f"{path}/pooled/c/0/0"))
    plain[100] ^= 0x40  # one flipped bit in an unencoded chunk: still a valid float
    s3.pipe_file(f"{path}/pooled/c/0/0", bytes(plain))
    s3.rm_file(f"{path}/trimmed/c/0/0")
    problems = verify_cache(f"{url}/valid.zarr")
    assert len(problems) == 2, problems
    assert "pooled: chunk 0 (rows 0..29, file pooled/c/0/0) differs from the checksum" in problems[0]
    assert "trimmed: chunk 0" in problems[1] and "the file is missing" in problems[1]
    out = _cli("prep", "verify", f"{url}/valid.zarr", ok=False)
    assert f"{url}/valid.zarr: 2 problem(s)" in out
    with pytest.raises(CacheError, match=f"{url}/valid.zarr: pooled: chunk 0 .* differs"):
        from nsynth_prep.cache.checked import CheckedArray

        CheckedArray(cache.open_cache(f"{url}/valid.zarr"), "pooled").read_rows(0, None)




def test_killed_build_resumes_to_the_same_objects(s3: Any, corpus: Path) -> None:
    url = f"s3://{BUCKET}/killed"
    _aged(corpus / "nsynth-train")
    proc = subprocess.run([sys.executable, "-c", KILLER, str(corpus / "nsynth-train"), url], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # Its done mark (one of two 32-row chunks) and its lease are in the bucket, where another
    # machine would see them.
    assert s3.find(f"{BUCKET}/killed/train.zarr.build/done/trimmed") == [
        f"{BUCKET}/killed/train.zarr.build/done/trimmed/0.json"]
    assert len(s3.find(f"{BUCKET}/killed/train.zarr.lock")) == 1
    with pytest.raises(CacheError, match="incomplete"):
        cache.open_cache(f"{url}/train.zarr")
    # The dead holder's lease (this host, its pid gone) is taken over at once.
    done = build_cache(corpus / "nsynth-train", url, BuildConfig(features=("trimmed",)), progress=False)[0]
    assert str(done.path) == f"{url}/train.zarr"
    build_cache(corpus / "nsynth-train", f"s3://{BUCKET}/ref", BuildConfig(features=("trimmed",)), progress=False)
    resumed, fresh = _objects(s3, f"{BUCKET}/killed"), _objects(s3, f"{BUCKET}/ref")
    assert sorted(resumed) == sorted(fresh)
    assert [k for k in fresh if resumed[k] != fresh[k]] == []
    assert verify_cache(done.path) == []
    # By 2 forked workers (one 32-row block each, each with its own s3fs session): the same
    # objects but the metadata, which records the number of workers.
    build_cache(corpus / "nsynth-train", f"s3://{BUCKET}/forked", BuildConfig(features=("trimmed",), workers=2),
                progress=False)
    forked = _objects(s3, f"{BUCKET}/forked")
    assert sorted(forked) == sorted(fresh)
    assert [k for k in fresh if forked[k] != fresh[k]] == ["train.zarr/zarr.json"]


def test_dask_workers_write_a_cache_on_s3_as_a_local_build_does(s3: Any, corpus: Path) -> None:
    """The three parts together: chunk tasks on a LocalCluster of 2 worker processes (which find
    the endpoint and credentials in the AWS_* variables they inherit) write the same objects into
    the bucket as a build in this process."""
    pytest.importorskip("distributed", reason="the dask extra: pip install -e '.[dask]'")
    _aged(corpus / "nsynth-train")
    config = BuildConfig(features=("pooled", "trimmed"))
    build_cache(corpus / "nsynth-train", f"s3://{BUCKET}/dask", replace(config, dask="local:2"), progress=False)
    build_cache(corpus / "nsynth-train", f"s3://{BUCKET}/dask-ref", config, progress=False)
    on_dask, here = _objects(s3, f"{BUCKET}/dask"), _objects(s3, f"{BUCKET}/dask-ref")
    assert sorted(on_dask) == sorted(here) and [k for k in here if on_dask[k] != here[k]] == []
    assert verify_cache(f"s3://{BUCKET}/dask/train.zarr") == []


def test_archive_build_resumes_on_another_machine_by_spooling_again(s3: Any, corpus: Path, built: str) -> None:
    url, source = f"s3://{BUCKET}/spooled", corpus / "nsynth-train.jsonwav.tar.gz"
    proc = subprocess.run([sys.executable, "-c", SPOOL_KILLER, str(source), url], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    work = store.Remote(f"{url}/train.zarr.build")
    local = store.spool_dir(work)  # the spool stays on this machine; the work folder is in the bucket
    assert sorted(p.name for p in (local / "spool").glob("block-*.json")) == ["block-00000.json", "block-00001.json"]
    assert s3.find(f"{BUCKET}/spooled/train.zarr.build") == [f"{BUCKET}/spooled/train.zarr.build/source.json"]
    import shutil

    shutil.rmtree(local)  # "another machine": no spool
    done = build_cache(source, url, BuildConfig(), progress=False)[0]
    assert verify_cache(done.path) == [] and not local.exists()  # the local spool goes with the build
    # The same notes as the `built` cache of the folder of this archive: every array object is the
    # same; only the metadata and the source fingerprint name another source.
    resumed = _objects(s3, f"{BUCKET}/spooled/train.zarr")
    fresh = _objects(s3, f"{built.removeprefix('s3://')}/train.zarr")
    assert sorted(resumed) == sorted(fresh)
    assert [k for k in fresh if resumed[k] != fresh[k] and k != "zarr.json" and not k.startswith("source_files/")] == []


def test_lease_refuses_a_second_writer_and_takes_over_an_expired_one(s3: Any) -> None:
    lock = store.location(f"s3://{BUCKET}/leases/train.zarr.lock")
    assert isinstance(lock, store.Remote)
    with exclusive(lock, "cache s3://x/train.zarr"):
        held = s3.find(f"{BUCKET}/leases/train.zarr.lock")
        assert len(held) == 1
        with pytest.raises(LockedError, match=rf"cache s3://x/train.zarr is being written by pid {os.getpid()} on "
                                              rf"{socket.gethostname()}"), exclusive(lock, "cache s3://x/train.zarr"):
            pass
    assert s3.find(f"{BUCKET}/leases/train.zarr.lock") == []  # released
    # A lease of another host: live until its expiry, then taken over (generation 8 -> 9).
    other = {"pid": 1, "host": "elsewhere", "command": "nsynth prep build-cache", "since": "then"}
    key = f"{BUCKET}/leases/train.zarr.lock/lease-{8:012d}.json"
    s3.pipe_file(key, json.dumps({**other, "expires": time.time() + 600}).encode())
    with pytest.raises(LockedError, match="pid 1 on elsewhere"), exclusive(lock, "cache s3://x/train.zarr"):
        pass
    s3.pipe_file(key, json.dumps({**other, "expires": time.time() - 1}).encode())
    with exclusive(lock, "cache s3://x/train.zarr"):
        assert s3.find(f"{BUCKET}/leases/train.zarr.lock") == [f"{BUCKET}/leases/train.zarr.lock/lease-{9:012d}.json"]


HOLD = """
import sys, time
from nsynth_prep.storage.lock import exclusive
from nsynth_prep.storage.store import location
with exclusive(location(sys.argv[1]), "cache s3://x/train.zarr"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_lease_of_another_process_refuses_then_is_taken_over_once_it_is_killed(s3: Any) -> None:
    url = f"s3://{BUCKET}/held/train.zarr.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"is being written by pid {proc.pid} on "), \
                exclusive(store.Remote(url), "cache s3://x/train.zarr"):
            pass
    finally:
        proc.kill()  # SIGKILL: its lease stays, unreleased and unexpired
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    with exclusive(store.Remote(url), "cache s3://x/train.zarr"):  # its pid is gone: taken over at once
        (key,) = s3.find(f"{BUCKET}/held/train.zarr.lock")
        assert json.loads(s3.cat_file(key))["pid"] == os.getpid()


@pytest.mark.parametrize("scheme", ["s3", "file"])
def test_racing_writers_get_one_lease(s3: Any, tmp_path: Path, scheme: str) -> None:
    """Eight writers start together, each once: at no moment do two hold the lease."""
    import threading

    url = f"s3://{BUCKET}/race/train.zarr.lock" if scheme == "s3" else f"file://{tmp_path}/train.zarr.lock"
    holding, most, got, refused = [0], [0], [0], [0]
    guard, start = threading.Lock(), threading.Barrier(8)

    def writer() -> None:
        start.wait()
        try:
            with exclusive(store.Remote(url), "cache"):
                with guard:
                    holding[0] += 1
                    got[0] += 1
                    most[0] = max(most[0], holding[0])
                time.sleep(0.2)
                with guard:
                    holding[0] -= 1
        except LockedError:
            with guard:
                refused[0] += 1

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and got[0] >= 1 and got[0] + refused[0] == 8


def test_wait_takes_the_lease_when_its_holder_is_done(s3: Any) -> None:
    import threading

    lock, order = store.Remote(f"s3://{BUCKET}/waited/train.zarr.lock"), []
    held = threading.Event()

    def holder() -> None:
        with exclusive(lock, "cache"):
            held.set()
            time.sleep(0.5)
            order.append("holder done")

    t = threading.Thread(target=holder)
    t.start()
    held.wait()
    with exclusive(lock, "cache", wait=True):
        order.append("waiter in")
    t.join()
    assert order == ["holder done", "waiter in"]


def test_lease_is_renewed_while_held(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSYNTH_LEASE_SECONDS", "1")  # a heartbeat every third of a second
    with exclusive(store.Remote(f"s3://{BUCKET}/renewed/train.zarr.lock"), "cache"):
        (key,) = s3.find(f"{BUCKET}/renewed/train.zarr.lock")
        first = json.loads(s3.cat_file(key))["expires"]
        time.sleep(1.2)  # longer than the lease: only a renewal keeps it live
        renewed = json.loads(s3.cat_file(key))
        assert renewed["expires"] > first and renewed["expires"] > time.time()


def test_a_writer_whose_lease_was_taken_over_does_not_end_as_if_alone(s3: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSYNTH_LEASE_SECONDS", "1")
    with pytest.raises(LockedError, match=r"lease .* was taken over while it wrote"), \
            exclusive(store.Remote(f"s3://{BUCKET}/lost/train.zarr.lock"), "cache"):
        # Another writer took over (as after a stall longer than the lease): a higher generation.
        s3.pipe_file(f"{BUCKET}/lost/train.zarr.lock/lease-{7:012d}.json", b"{}")
        time.sleep(0.6)  # the next heartbeat sees it


def test_a_stalled_writer_does_not_renew_or_release_the_next_writers_lease_of_its_number(s3: Any) -> None:
    """Generation numbers start again at 0 once every lease is released: a writer that stalled
    while others came and went must see that the lease of its number is no longer its own."""
    from nsynth_prep.storage.lease import Lease

    folder = store.Remote(f"s3://{BUCKET}/reused/train.zarr.lock")
    stalled = Lease(folder, 60)
    assert stalled.try_take() is None and stalled.generation == 0
    stalled.key.unlink()  # taken over and released by a second writer while this one stalled
    after = Lease(folder, 60)
    assert after.try_take() is None and after.generation == 0  # a third writer: the same number
    assert not stalled._ours() and after._ours()
    stalled.release()  # must not delete the third writer's lease
    assert stalled.lost
    assert json.loads(s3.cat_file(after.key.key))["token"] == after._info["token"]
    after.release()
    assert s3.find(folder.key) == []


def test_a_file_url_and_its_path_share_one_lock(tmp_path: Path) -> None:
    """file:// is a local folder: both spellings take the same flock (no lease objects)."""
    lock = tmp_path / "train.zarr.lock"
    with exclusive(lock, "cache"), pytest.raises(LockedError), exclusive(store.Remote(f"file://{lock}"), "cache"):
        pass
    with exclusive(store.Remote(f"file://{lock}"), "cache"), pytest.raises(LockedError), exclusive(lock, "cache"):
        pass
    assert lock.is_file()


def test_storage_problems_are_one_line_naming_the_url(s3: Any, corpus: Path) -> None:
    with pytest.raises(StorageError, match=r"^s3://no-such-bucket/c/train.zarr: the bucket 'no-such-bucket' does "
                                           "not exist"):
        cache.open_cache("s3://no-such-bucket/c/train.zarr")
    out = _cli("prep", "build-cache", str(corpus / "nsynth-test"), "--cache", "s3://no-such-bucket/c", ok=False)
    assert out.strip().splitlines() == [out.strip()] and "no-such-bucket" in out
    with pytest.raises(CacheError, match=f"^s3://{BUCKET}/nothing/train.zarr: no cache here"):
        cache.open_cache(f"s3://{BUCKET}/nothing/train.zarr")
    with pytest.raises(StorageError, match="cannot lock a cache on memory://"), \
            exclusive(store.Remote("memory://x/train.zarr.lock"), "cache"):
        pass


def test_no_credentials_is_one_line(built: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent",
               AWS_EC2_METADATA_DISABLED="true")
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "inspect", f"{built}/train.zarr"], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == (f"error: {built}/train.zarr: cannot use the storage: no credentials (set "
                                   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)")


def test_file_urls_take_the_remote_path_and_write_the_same_files(corpus: Path, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/remote"
    _aged(corpus / "nsynth-test")
    build_cache(corpus / "nsynth-test", url, BuildConfig(features=("pooled", "trimmed")), progress=False)
    build_cache(corpus / "nsynth-test", tmp_path / "local", BuildConfig(features=("pooled", "trimmed")),
                progress=False)
    c = cache.open_cache(f"{url}/test.zarr")
    assert isinstance(c.path, store.Remote) and str(c.path) == f"{url}/test.zarr"
    assert verify_cache(f"{url}/test.zarr") == []

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(tmp_path / "remote" / "test.zarr") == files(tmp_path / "local" / "test.zarr")
    # The lease on file:// (fsspec's local open(..., "xb") is O_EXCL) refuses a second writer too.
    lock = store.Remote(f"{url}/test.zarr.lock")
    with exclusive(lock, "cache"), pytest.raises(LockedError, match=f"pid {os.getpid()}"), exclusive(lock, "cache"):
        pass
