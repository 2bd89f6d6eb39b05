"""Where a cache lives: a local folder (a plain :class:`pathlib.Path`) or an fsspec URL.

A cache location is a ``Path`` for a local path, exactly as before (the mmap loader of
:mod:`.chunks`, ``flock`` writer locks, tmp+rename writes), or a :class:`Remote` for a URL with
a scheme (``s3://bucket/prefix``, ``gs://...``, ``file:///abs/path``). ``Remote`` offers the
small part of ``Path``'s interface the cache layer uses (``/``, ``name``, ``with_name``,
``exists``, ``is_file``, ``iterdir``, ``read_text``, ``relative_to``, ``mkdir``) on top of an
fsspec filesystem, so most of the cache code runs unchanged on both; what differs (atomic
writes, removing a folder, opening the zarr store, the writer lock) goes through the functions
here. :func:`storage_errors` turns a refused write (disk full, read-only) into one line.

Storage options are fsspec's defaults: s3fs (through botocore) reads ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL``
(the installed botocore honours it), gcsfs its own variables. ``file://`` URLs go through the
same code as remote ones (fsspec's local filesystem), which makes the remote path testable
without a server.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from nsynth_prep.errors import StorageError
from nsynth_prep.storage.atomic import atomic_path, tmp_name

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Any other protocol is taken for an object store: a PUT is atomic, a "folder" is a key prefix.
FILE_PROTOCOLS = ("file", "local")  # fsspec's local filesystem: folders, and rename is atomic
# numpy's ndarray.tofile (np.save) reports a short write without an errno: "960000 requested and
# 518080 written" is what a full disk looks like there.
SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
DISK_ERRNOS = {errno.ENOSPC: "disk full", errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EDQUOT: "disk quota exceeded", errno.EPERM: "operation not permitted"}


def is_url(where: object) -> bool:
    """Whether ``where`` is a string with a scheme (``s3://...``), as opposed to a local path."""
    return isinstance(where, str) and bool(_SCHEME.match(where))


def _filesystem(protocol: str) -> Any:
    """The fsspec filesystem of ``protocol`` (synchronous API); fsspec caches instances per
    process, so a forked worker gets its own (an s3fs session must not cross a fork)."""
    try:
        import fsspec
    except ImportError:  # fsspec is a dependency of zarr's remote stores, not of nsynth itself
        raise StorageError(f"{protocol}:// caches need fsspec: pip install 'nsynth[s3]'") from None
    try:
        return fsspec.filesystem(protocol, **_own_options(protocol))
    except (ImportError, ValueError) as exc:
        hint = "pip install 'nsynth[s3]'" if protocol in ("s3", "s3a") else f"install the fsspec package for {protocol}://"
        raise StorageError(f"{protocol}:// caches need a filesystem package that is not installed ({exc}); {hint}") from None


def _options(protocol: str) -> dict[str, Any]:
    # fsspec's local filesystem does not create parent folders unless told to; object stores
    # read their credentials and endpoint from the environment.
    return {"auto_mkdir": True} if protocol in FILE_PROTOCOLS else {}


def _own_options(protocol: str) -> dict[str, Any]:
    # The instances nsynth lists with itself (leases, done marks, exists) must see what other
    # processes wrote since: no listing cache (s3fs keeps listings otherwise).
    return _options(protocol) if protocol in FILE_PROTOCOLS else {"use_listings_cache": False}


class Remote:
    """A location (object or key prefix) in an fsspec filesystem, named by its URL.

    Only the URL is stored, so a ``Remote`` pickles and crosses a fork; the filesystem is looked
    up on use.
    """

    __slots__ = ("key", "protocol", "url")

    def __init__(self, url: str) -> None:
        match = _SCHEME.match(url)
        if not match:
            raise ValueError(f"not a URL: {url!r}")
        self.protocol = match.group(1).lower()
        self.key = url[match.end():].rstrip("/")  # the path as the filesystem names it
        if self.protocol in FILE_PROTOCOLS:  # as fsspec reads it: file://a/b is a/b under the working folder
            self.key = "/" + os.path.abspath(self.key or "/").lstrip("/")
        self.url = f"{self.protocol}://{self.key}"

    def __getstate__(self) -> str:
        return self.url

    def __setstate__(self, url: str) -> None:
        self.__init__(url)  # type: ignore[misc]

    @property
    def fs(self) -> Any:
        return _filesystem(self.protocol)

    @property
    def atomic_put(self) -> bool:
        """Whether one write is atomic as it is (an object store's PUT), not needing tmp+rename."""
        return self.protocol not in FILE_PROTOCOLS

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Remote({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Remote) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __truediv__(self, name: str | PurePosixPath) -> Remote:
        return Remote(f"{self.url}/{str(name).strip('/')}")

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> Remote:
        return Remote(f"{self.protocol}://{self.key.rsplit('/', 1)[0]}")

    def with_name(self, name: str) -> Remote:
        return self.parent / name

    def relative_to(self, other: Remote | Path) -> PurePosixPath:
        return PurePosixPath(self.key).relative_to(other.key if isinstance(other, Remote) else str(other))

    def exists(self) -> bool:
        """An object, or a prefix with objects under it."""
        return bool(self.fs.exists(self.key))

    def is_file(self) -> bool:
        return bool(self.fs.isfile(self.key))

    def iterdir(self) -> Iterator[Remote]:
        try:
            names = self.fs.ls(self.key, detail=False)
        except FileNotFoundError:
            return iter(())
        return iter([Remote(f"{self.protocol}://{n.rstrip('/')}") for n in names if n.rstrip("/") != self.key])

    def read_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(self.key))

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Folders exist only on file://; on an object store a prefix exists once it holds an object."""
        if self.protocol in FILE_PROTOCOLS:
            self.fs.makedirs(self.key, exist_ok=True)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise


Location = Path | Remote
Where = str | os.PathLike[str] | Remote  # what callers may give: a path, a URL, or either parsed


def location(where: Where) -> Location:
    """A cache location from a CLI argument or a caller's value: a ``Remote`` for a URL (any
    scheme, ``file://`` included), else a ``Path``."""
    if isinstance(where, Remote):
        return where
    if isinstance(where, Path):  # a Path never holds a URL ("s3://b" would be "s3:/b")
        return where
    text = os.fspath(where)
    return Remote(text) if is_url(text) else Path(text)


def relative(child: Location, parent: Location) -> str:
    """``child``'s path below ``parent`` (for messages: ``pooled/c/3/0``)."""
    if isinstance(child, Remote):
        return str(child.relative_to(parent))
    return str(child.relative_to(parent if isinstance(parent, Path) else parent.key))


def write_atomic(where: Location, data: bytes) -> None:
    """Write ``data`` so that a reader sees the old content or all of the new, never part.

    Local folders (and file:// URLs) write a temporary file beside it (named by
    :func:`.atomic.tmp_name`) and rename it over; an object store's single PUT is atomic already.
    """
    if isinstance(where, Path):
        with atomic_path(where) as tmp:
            tmp.write_bytes(data)
    elif where.atomic_put:
        where.fs.pipe_file(where.key, data)
    else:
        tmp_key = where.with_name(tmp_name(where.name)).key
        where.fs.pipe_file(tmp_key, data)  # fsspec, not atomic_path: it creates the missing parent folders
        os.replace(tmp_key, where.key)  # fsspec's local filesystem: the key is the path


@contextlib.contextmanager
def storage_errors(what: str | Location) -> Iterator[None]:
    """Turn a refused write (disk full, read-only, permission) into one :class:`StorageError`
    line naming ``what``; other ``OSError``s pass through."""
    try:
        yield
    except OSError as exc:
        code = exc.errno
        if code is None and SHORT_WRITE.search(str(exc)):  # numpy's tofile on a full disk: no errno
            code = errno.ENOSPC
        if code not in DISK_ERRNOS:
            raise
        where = exc.filename or what
        then = ("free some space, then run the same command again: it resumes"
                if code in (errno.ENOSPC, errno.EDQUOT) else "choose a folder you can write to")
        error = StorageError(f"{where}: cannot write ({DISK_ERRNOS[code]}); nothing written so far is lost: {then}")
        error.refused = f"{where}: cannot write ({DISK_ERRNOS[code]})"  # for callers with their own advice
        raise error from None


def rmtree(where: Location, ignore_errors: bool = False) -> None:
    """Remove a folder (a local one, or every object under a prefix)."""
    if isinstance(where, Path):
        shutil.rmtree(where, ignore_errors=ignore_errors)
        return
    try:
        if where.exists():
            where.fs.rm(where.key, recursive=True)
    except FileNotFoundError:
        pass
    except OSError:
        if not ignore_errors:
            raise


def zarr_store(where: Location, read_only: bool = False) -> Any:
    """What ``zarr.open_group`` takes for ``where``: the path itself for a local folder (zarr's
    LocalStore, unchanged), else zarr's own ``FsspecStore`` over the URL."""
    if isinstance(where, Path):
        return where
    from zarr.storage import FsspecStore

    where.fs  # noqa: B018 -- the one-line error for a missing filesystem package, before zarr's
    return FsspecStore.from_url(where.url, storage_options=_options(where.protocol), read_only=read_only)


def store_url(store: Any) -> str | None:
    """The URL of a zarr ``FsspecStore`` (for messages), None for any other store."""
    fs = getattr(store, "fs", None)
    if fs is None or not hasattr(store, "path"):
        return None
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    protocol = "file" if protocol in FILE_PROTOCOLS else protocol
    return str(Remote(f"{protocol}://{str(store.path).rstrip('/')}"))


def disk_bytes(where: Location) -> int:
    """Bytes stored under a folder or prefix."""
    if isinstance(where, Path):
        return sum(f.stat().st_size for f in where.rglob("*") if f.is_file())
    return int(where.fs.du(where.key, total=True))


def spool_dir(work: Location) -> Path:
    """Where a build spools a ``.tar.gz`` source: in its work folder when that is local; for a
    cache on an object store, a local folder named after the work folder's URL (the spool is a
    cache of the source, not of the cache: a resume on another machine spools again).
    ``NSYNTH_SPOOL_DIR`` chooses the parent (default: the system's temporary folder)."""
    if isinstance(work, Path):
        return work
    base = Path(os.environ.get("NSYNTH_SPOOL_DIR") or Path(tempfile.gettempdir()) / "nsynth-spool")
    return base / hashlib.sha256(work.url.encode()).hexdigest()[:16]


def _cause(exc: BaseException) -> str:
    """A short cause for a refused or failed request to a storage service."""
    kind = type(exc).__name__
    text = (str(exc).splitlines() or [""])[0][:200]
    if kind in ("NoCredentialsError", "PartialCredentialsError"):
        return "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    if isinstance(exc, FileNotFoundError):
        return f"not found: {text}" if text else "not found"
    if isinstance(exc, PermissionError):
        return f"access denied ({text}); check the credentials" if text else "access denied; check the credentials"
    if "Endpoint" in kind or "Connect" in kind or isinstance(exc, ConnectionError | TimeoutError):
        return f"cannot reach the endpoint ({text or kind})"
    return f"{kind}: {text}" if text else kind


def probe(where: Location, write: bool = False) -> None:
    """Check once that the store behind ``where`` answers (the bucket exists, the credentials are
    accepted, the endpoint is reachable), so that a problem is one line naming the URL and its
    cause rather than a traceback from the first read or write. Local paths are not probed.

    Raises
    ------
    StorageError
    """
    if isinstance(where, Path):
        return
    try:
        fs = where.fs
        if where.protocol in FILE_PROTOCOLS:
            return
        bucket = where.key.split("/", 1)[0]
        try:
            # Listing the parent prefix touches the bucket and the credentials without reading data
            # (one page: the prefix of one cache folder).
            fs.ls(where.parent.key if "/" in where.key else bucket, detail=False)
        except FileNotFoundError:  # an empty prefix, or no bucket at all
            if not fs.exists(bucket):
                raise
    except StorageError:
        raise
    except FileNotFoundError as exc:
        raise StorageError(f"{where}: the bucket {bucket!r} does not exist or is not visible with these "
                           f"credentials ({_cause(exc)})") from None
    except Exception as exc:  # botocore and the HTTP stack raise many types; all mean the same here
        raise StorageError(f"{where}: cannot use the storage: {_cause(exc)}") from None
