"""Cache format 2: typed metadata round trips and refuses malformed attrs, int16 audio gives back
the source's floats bit for bit, version 1 is refused with the command that rebuilds it, and
chunks read straight from their files are what zarr reads."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from click.testing import Result
from zarr.codecs import ZstdCodec

from nsynth_prep.builder.pipeline import BuildConfig, build_cache
from nsynth_prep.cache import format as cache
from nsynth_prep.cache.checked import CheckedArray
from nsynth_prep.cache.chunks import ChunkFiles
from nsynth_prep.cache.meta import CacheMeta, MetaError
from nsynth_prep.cache.verify import verify_cache
from nsynth_prep.errors import CacheError
from nsynth_prep.labels import FAMILIES
from nsynth_prep.readers.tfrecord import decode_example, iter_records
from nsynth_prep.readers.wav import read_pcm16

ALL = ("pooled", "framed", "trimmed")


@pytest.fixture(scope="module")
def built(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test split (30 notes) with every feature, from WAVs and from the TFRecord."""
    out = {}
    for fmt, name in (("jsonwav", "nsynth-test"), ("tfrecord", "nsynth-test.tfrecord")):
        d = tmp_path_factory.mktemp(fmt)
        build_cache(corpus / name, d, BuildConfig(features=ALL, workers=2), progress=False)
        out[fmt] = d / "test.zarr"
    return out


def _raw(path: Path) -> dict[str, Any]:
    return dict(zarr.open_group(path, mode="r").attrs["nsynth"])  # type: ignore[arg-type]


# --- typed metadata ------------------------------------------------------------------------------


def test_metadata_round_trips(built: dict[str, Path]) -> None:
    raw = _raw(built["jsonwav"])
    meta = CacheMeta.from_attrs(raw)
    assert meta.to_attrs() == raw and CacheMeta.from_attrs(json.loads(json.dumps(meta.to_attrs()))) == meta
    assert meta.complete and meta.notes == 30 and meta.split == "test" and meta.families == FAMILIES
    framed = meta.features["framed"]
    assert (str(framed.dtype), framed.scale, framed.row_shape) == ("int16", 1 / 32768, (100, 160))
    assert (str(meta.features["pooled"].dtype), meta.features["pooled"].scale) == ("float32", 1.0)
    assert meta.counts is not None and meta.counts.notes == 30 and sum(meta.counts.family.values()) == 30
    assert meta.build.rows == BuildConfig().rows() and meta.build.source.format == "jsonwav"
    assert cache.open_cache(built["jsonwav"]).meta == meta


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit of the raw attrs at a dotted key (``features.framed.scale``); None removes the key."""
    def edit(attrs: dict[str, Any]) -> None:
        *parents, last = key.split(".")
        d = attrs
        for k in parents:
            d = d[k]
        if value is None:
            d.pop(last)
        else:
            d[last] = value
    return edit


MALFORMED = [
    ("notes", "30", r"notes is '30', not an integer >= 0"),
    ("notes", True, r"notes is True, not an integer >= 0"),
    ("state", "done", r"state is 'done', not one of building, complete"),
    ("checksum", "crc32", r"checksum is 'crc32', not one of crc32c"),
    ("families", ["bass"], r"families are not NSynth's"),
    ("label_checksums.pitch", None, r"label_checksums has \[.*\], expected"),
    ("label_checksums.pitch", "xyz", r"label_checksums\.pitch is 'xyz', not a checksum \(8 hex digits\)"),
    ("features.framed.scale", 1.0, r"features\.framed\.scale is 1\.0; framed stored as int16 has scale 3\.0517578125e-05"),
    ("features.framed.dtype", "float32", r"features\.framed\.dtype is 'float32', not one of int16"),
    ("features.pooled.params.kernel", 0, r"features\.pooled\.params: pooled: kernel 0"),
    ("features.framed.params", {"name": "trimmed", "length": 16000}, r"features\.framed holds the params of trimmed"),
    ("features.pooled.params.window", 3, r"features\.pooled\.params: pooled params \['kernel', 'length', 'stride', "
                                         r"'window'\] are not its own"),
    ("build.seed", 1.5, r"build\.seed is 1\.5, not an integer"),
    ("build.families", ["bass", "banjo"], r"build\.families is 'banjo', not one of bass"),
    ("build.skipped", [{"note": "x"}], r"build\.skipped\[0\]\.reason is missing, not a string"),
    ("build.source.fingerprint", {"scheme": 2}, r"build\.source\.fingerprint\.kind is missing"),
    ("counts.family_source", [[0, 0, 0]] * 11, r"counts: the totals do not agree with family_source"),
    ("counts", None, r"counts is missing, not an object"),
]


@pytest.mark.parametrize(("key", "value", "message"), MALFORMED, ids=[f"{k}={v!r}" for k, v, _ in MALFORMED])
def test_malformed_attrs_are_refused_naming_the_key(built: dict[str, Path], tmp_path: Path, key: str, value: Any,
                                                    message: str) -> None:
    raw = _raw(built["jsonwav"])
    _set(key, value)(raw)
    with pytest.raises(MetaError, match=message):
        CacheMeta.from_attrs(raw)
    path = tmp_path / "test.zarr"
    shutil.copytree(built["jsonwav"], path)
    zarr.open_group(path, mode="r+").attrs["nsynth"] = raw
    with pytest.raises(CacheError, match=rf"test\.zarr: zarr\.json: attrs\['nsynth'\] .*{message}") as info:
        cache.open_cache(path)
    assert "\n" not in str(info.value) and "the cache is damaged" in str(info.value)
    assert len(verify_cache(path)) == 1 and "zarr.json: attrs['nsynth']" in verify_cache(path)[0]


def test_a_checksum_count_that_does_not_fit_the_notes(built: dict[str, Path]) -> None:
    raw = _raw(built["jsonwav"])
    raw["features"]["trimmed"]["checksums"] = raw["features"]["trimmed"]["checksums"][:1]  # 30 rows / 32: 1 chunk
    CacheMeta.from_attrs(raw)
    raw["features"]["trimmed"]["checksums"] *= 2
    with pytest.raises(MetaError, match=r"features\.trimmed: 2 chunk checksums for 1 chunks"):
        CacheMeta.from_attrs(raw)


# --- version 1 ----------------------------------------------------------------------------------


def _as_version_1(path: Path) -> None:
    """Rewrite a cache's attrs as format 1 wrote them (float32 audio: no dtype, scale or checksum name)."""
    group = zarr.open_group(path, mode="r+")
    raw = dict(group.attrs["nsynth"])  # type: ignore[arg-type]
    raw["format_version"] = 1
    raw.pop("checksum")
    for f in raw["features"].values():
        f.pop("dtype"), f.pop("scale")
    group.attrs["nsynth"] = raw


def test_version_1_is_refused_with_the_command_that_rebuilds_it(corpus: Path, tmp_path: Path,
                                                                cli: Callable[..., Result]) -> None:
    config = BuildConfig(features=("pooled", "framed"), exclude_families=("synth_lead",), seed=3)
    s = build_cache(corpus / "nsynth-test", tmp_path / "c", config, progress=False)[0]
    _as_version_1(s.path)
    command = (f"rm -r {s.path} && nsynth prep build-cache {(corpus / 'nsynth-test').resolve()} --cache "
               f"{tmp_path / 'c'} --split test --feature pooled --feature framed --exclude-families synth_lead "
               "--seed 3")
    with pytest.raises(cache.OtherVersion) as info:
        cache.open_cache(s.path)
    assert str(info.value) == (f"{s.path}: cache format version 1, written by an older nsynth (audio as float32); this "
                               f"nsynth reads version 2 only. Rebuild it: {command}")
    assert verify_cache(s.path) == [str(info.value)]
    with pytest.raises(cache.OtherVersion, match="Rebuild it: rm -r"):  # a build never replaces it unasked
        build_cache(corpus / "nsynth-test", tmp_path / "c", config, progress=False)
    result = cli("inspect", str(s.path))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "Rebuild it: rm -r" in result.stderr
    # The command does what it says: the shell's rm -r, then nsynth (in this process).
    remove, rebuild = command.split(" && ")
    subprocess.run(remove, shell=True, check=True, timeout=60)
    words = shlex.split(rebuild)
    assert words[0] == "nsynth"
    assert cli("-q", *words[1:]).exit_code == 0
    assert cache.open_cache(s.path).meta.build.rows == config.rows() and verify_cache(s.path) == []


def test_an_interrupted_version_1_build_starts_over(corpus: Path, tmp_path: Path, edit_attrs: Callable[..., None]
                                                    ) -> None:
    s = build_cache(corpus / "nsynth-test", tmp_path, BuildConfig(), progress=False)[0]
    _as_version_1(s.path)
    edit_attrs(s.path, state="building")
    with pytest.raises(cache.OtherVersion):  # no work folder: not a rerun of that build
        build_cache(corpus / "nsynth-test", tmp_path, BuildConfig(), progress=False)
    (tmp_path / "test.zarr.build").mkdir()
    again = build_cache(corpus / "nsynth-test", tmp_path, BuildConfig(), progress=False)[0]
    assert again.built_now == ["pooled"] and verify_cache(s.path) == []


def test_a_newer_version_is_refused(built: dict[str, Path], tmp_path: Path, edit_attrs: Callable[..., None]) -> None:
    path = tmp_path / "test.zarr"
    shutil.copytree(built["jsonwav"], path)
    edit_attrs(path, format_version=3)
    with pytest.raises(cache.OtherVersion, match=r"test\.zarr: cache format version 3; this nsynth reads version 2 "
                                                 "only: use the nsynth that wrote it"):
        cache.open_cache(path)


# --- int16 audio ---------------------------------------------------------------------------------


def test_int16_audio_gives_back_the_wav_floats_bit_for_bit(built: dict[str, Path], corpus: Path) -> None:
    group = zarr.open_group(built["jsonwav"], mode="r")
    names = group["note_str"][...].tolist()
    pcm = np.stack([read_pcm16((corpus / "nsynth-test" / "audio" / f"{n}.wav").read_bytes(), n) for n in names])
    want = pcm.astype(np.float32) / np.float32(32768)  # what format 1 stored
    c = cache.open_cache(built["jsonwav"])
    for name, length in (("framed", 16_000), ("trimmed", 51_200)):
        stored = CheckedArray(c, name).read_all()
        assert stored.dtype == np.int16
        np.testing.assert_array_equal(stored.reshape(len(names), -1), pcm[:, :length])
        floats = c.floats(name, slice(None)).reshape(len(names), -1)
        assert floats.dtype == np.float32 and floats.tobytes() == want[:, :length].tobytes()


def test_int16_audio_gives_back_the_tfrecord_floats_bit_for_bit(built: dict[str, Path], corpus: Path) -> None:
    floats = {}
    for _, _, payload in iter_records(corpus / "nsynth-test.tfrecord"):
        labels, offset, count = decode_example(payload, "test")
        floats[labels.note_str] = np.frombuffer(payload, "<f4", count, offset)
    c = cache.open_cache(built["tfrecord"])
    names = c.label("note_str").tolist()
    for name, length in (("framed", 16_000), ("trimmed", 51_200)):
        got = c.floats(name, slice(None)).reshape(len(names), -1)
        want = np.stack([floats[n][:length] for n in names]).astype(np.float32)
        assert got.tobytes() == want.tobytes(), name
    for name in ALL:  # and the same cache as from the WAVs
        np.testing.assert_array_equal(CheckedArray(c, name).read_all(),
                                      CheckedArray(cache.open_cache(built["jsonwav"]), name).read_all())


# --- chunks read straight from their files -------------------------------------------------------


@pytest.mark.parametrize("codec", ["format", "none", "zstd"])
def test_direct_chunk_reads_are_what_zarr_reads(built: dict[str, Path], tmp_path: Path, codec: str) -> None:
    group = zarr.open_group(built["jsonwav"], mode="r")
    for name in ALL:
        src = group[name]
        assert isinstance(src, zarr.Array)
        arr, folder = src, built["jsonwav"]
        if codec != "format":  # the same rows with another codec chain: read directly, or through zarr
            folder = tmp_path / f"{codec}.zarr"
            arr = zarr.open_group(folder, mode="a").create_array(
                name, shape=src.shape, dtype=src.dtype, chunks=(8, *src.shape[1:]),
                compressors=[ZstdCodec(level=1)] if codec == "zstd" else None)
            arr[...] = src[...]
        files = ChunkFiles(folder, name, arr)
        assert files.direct == (codec != "zstd") and files.blosc == (codec == "format" and name == "trimmed")
        assert files.mappable == (files.direct and not files.blosc)
        whole = np.asarray(arr[...])
        buf = np.full((files.chunk_rows, *arr.shape[1:]), 7, arr.dtype)
        for c in range(-(-arr.shape[0] // files.chunk_rows)):  # the last chunk is partial (30 rows)
            n = files.read_into(c, buf)
            rows = files.rows_of(c)
            assert n == len(rows)
            np.testing.assert_array_equal(buf[:n], whole[rows.start : rows.stop], err_msg=f"{codec} {name} {c}")
            if files.mappable:  # in place over the mapped file, read-only
                view = files.view(c)
                assert not view.flags.writeable and len(view) == n
                np.testing.assert_array_equal(view, whole[rows.start : rows.stop])


def test_a_chunk_zarr_never_wrote_reads_as_zeros(tmp_path: Path) -> None:
    arr = zarr.open_group(tmp_path / "z.zarr", mode="w").create_array("a", shape=(10, 4), dtype="int16", chunks=(4, 4))
    arr[...] = np.arange(40, dtype=np.int16).reshape(10, 4)
    arr[4:8] = 0  # zarr writes no file for an all-zero chunk
    files = ChunkFiles(tmp_path / "z.zarr", "a", arr)
    assert not files.file(1).exists()
    buf = np.ones((4, 4), np.int16)
    assert files.read_into(1, buf) == 4 and not buf.any()
    with pytest.raises(TypeError, match="does not fit a chunk"):
        files.read_into(0, np.ones((4, 4), np.float32))


def test_feature_meta_says_how_to_get_floats(built: dict[str, Path]) -> None:
    """What README tells a plain-zarr user: ``g["framed"][:128] * scale``."""
    g = zarr.open_group(built["jsonwav"], mode="r")
    scale = g.attrs["nsynth"]["features"]["framed"]["scale"]  # type: ignore[index,call-overload]
    floats = g["framed"][:8] * np.float32(scale)
    assert floats.dtype == np.float32 and floats.min() >= -1 and floats.max() < 1
    meta = cache.open_cache(built["jsonwav"]).meta
    assert dataclasses.replace(meta, notes=31) != meta  # frozen and comparable
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.notes = 3  # type: ignore[misc]
