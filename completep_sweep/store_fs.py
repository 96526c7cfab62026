"""Results on object storage: ``--results s3://bucket/prefix`` (``gs://``, any ``pyarrow.fs`` URI).

The store (store.py) reads and writes through paths; for a folder on object storage they are
``ObjectPath``s, which do the few things the store asks of a ``pathlib.Path`` through ``pyarrow.fs``.
What differs from a local disk, and why:
- Writes. Object stores have no rename, so a file is written whole to a local temporary file and
  sent in one PUT: an object appears complete or not at all (a PUT, like a multipart upload's
  completion, is atomic), so a reader never sees half a file and a killed driver leaves none.
- The driver lock: no flock, a lock object with a heartbeat (store_lock.py).
- Local files. What must be a local file lives in a cache folder per URI (``cache_folder``): the
  Optuna study (copied down before a run or a read, up after a run: it is an index of the rows,
  rebuilt from them where it lags), the report folder (written there, then uploaded to
  ``<uri>/<sweep>/report/``), the index of checked files, MLflow's default SQLite store.
- Credentials, endpoint and region come from the environment (AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL[_S3], AWS_REGION; for gs:// Google's
  usual ones). A URI carrying credentials or options is refused (URIs are printed), and messages
  built here are scrubbed of the secrets in the environment.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import tempfile
import time
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from urllib.parse import urlsplit

_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
SHAREABLE_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")
"""Settings a submitted job may carry (never a credential: a job's environment is shown by Ray)."""
ENDPOINT_HELP = (
    "set AWS_ENDPOINT_URL for a server other than AWS (e.g. http://127.0.0.1:9000), AWS_ACCESS_KEY_ID "
    "and AWS_SECRET_ACCESS_KEY (or your cloud's usual credentials), and check that the server is up"
)


class RemoteError(ValueError):
    """A results URI that cannot be used (malformed, unreachable, no such bucket): exit 2."""


def is_uri(text) -> bool:
    return isinstance(text, str) and "://" in text


def scrub(text: str) -> str:
    """``text`` without any credential of the environment in it (error texts are printed)."""
    for name in _SECRETS:
        secret = os.environ.get(name, "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def reason(e: BaseException) -> str:
    return scrub((str(e).strip().splitlines() or [type(e).__name__])[0][:300])


class ObjectPath:
    """A file or folder on object storage, with the operations of ``pathlib.Path`` the store uses."""

    __slots__ = ("fs", "base", "key", "info")

    def __init__(self, fs, base: str, key: str, info=None):
        # base + key is the URI shown ("s3://" + "bucket/prefix"); info: the listing's, for stat()
        self.fs, self.base, self.key, self.info = fs, base, key.rstrip("/"), info

    def __truediv__(self, name: str) -> ObjectPath:
        return ObjectPath(self.fs, self.base, f"{self.key}/{name}")

    def __str__(self) -> str:
        return self.base + self.key

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, ObjectPath) and (self.base, self.key) == (other.base, other.key)

    def __lt__(self, other: ObjectPath) -> bool:
        return self.key < other.key

    def __hash__(self) -> int:
        return hash((self.base, self.key))

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.fs, self.base, self.key.rsplit("/", 1)[0]) if "/" in self.key else self

    def _type(self):
        from pyarrow.fs import FileType

        return FileType, self.fs.get_file_info(self.key).type

    def exists(self) -> bool:
        kinds, kind = self._type()
        return kind != kinds.NotFound

    def is_file(self) -> bool:
        kinds, kind = self._type()
        return kind == kinds.File

    def is_dir(self) -> bool:
        kinds, kind = self._type()
        return kind == kinds.Directory

    def stat(self):
        info = self.info or self.fs.get_file_info(self.key)
        if info.size is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", str(self))
        return SimpleNamespace(st_size=info.size, st_mtime_ns=info.mtime_ns)

    def glob(self, pattern: str, *, recursive: bool = False) -> list[ObjectPath]:
        """The objects under this folder whose name matches (one listing; none when absent)."""
        from pyarrow.fs import FileSelector, FileType

        infos = self.fs.get_file_info(FileSelector(self.key, allow_not_found=True, recursive=recursive))
        return [
            ObjectPath(self.fs, self.base, i.path, i)
            for i in infos
            if i.type == FileType.File and fnmatch(i.base_name, pattern)
        ]

    def rglob(self, pattern: str) -> list[ObjectPath]:
        return self.glob(pattern, recursive=True)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.key) as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        with self.fs.open_output_stream(self.key) as f:  # one PUT when it closes
            f.write(data)

    def write_with(self, write) -> None:
        """``write(local_tmp_path)``, then the file in one PUT: no reader sees it before it is whole."""
        with tempfile.TemporaryDirectory(prefix="completep-put-") as tmp:
            local = Path(tmp) / self.name
            write(str(local))
            self.write_bytes(local.read_bytes())

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.delete_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Object stores have no folders: a key's prefix exists once an object is under it."""

    def replace(self, target: ObjectPath) -> ObjectPath:
        self.fs.move(self.key, target.key)  # a server-side copy, then a delete
        return target


# ---------------------------------------------------------------- opening a URI


def _parse(uri: str):
    """The URI's parts; refuses what would print a secret or be ignored (before any network)."""
    parts = urlsplit(uri)
    shown = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"
    if "@" in parts.netloc:
        raise RemoteError(
            f"{shown}: credentials in the URI are refused (URIs are printed in messages and commands); "
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or your cloud's usual variables) instead"
        )
    if parts.query or parts.fragment:
        raise RemoteError(
            f"{shown}: options in the URI are not read; set the endpoint and region in the environment "
            "(AWS_ENDPOINT_URL, AWS_REGION) and pass SCHEME://BUCKET/PREFIX"
        )
    if parts.scheme == "file":
        raise RemoteError(f"{uri}: pass a local folder as a plain path ({parts.path})")
    if not parts.netloc:
        raise RemoteError(f"{uri}: no bucket; pass SCHEME://BUCKET/PREFIX, e.g. s3://my-bucket/results")
    return parts


def check_uri(uri: str) -> None:
    """The URI's form only (no network): for `submit`, whose driver runs elsewhere."""
    _parse(uri)


@functools.lru_cache(maxsize=16)
def _region(bucket: str) -> str:
    from pyarrow import fs as pafs

    return pafs.resolve_s3_region(bucket)


def _filesystem(scheme: str, netloc: str, path: str):
    """(filesystem, key) built afresh from the environment as it is now."""
    from pyarrow import fs as pafs

    if scheme != "s3":
        return pafs.FileSystem.from_uri(f"{scheme}://{netloc}{path}")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not endpoint and not region:  # as FileSystem.from_uri does: a bucket answers only in its region
        region = _region(netloc)
    # The endpoint explicitly: pyarrow before 16 does not read AWS_ENDPOINT_URL. Delayed open: a small
    # object goes up in one PutObject when the stream closes, not as a multipart upload.
    options = dict(endpoint_override=endpoint or None, region=region or None)
    try:
        return pafs.S3FileSystem(**options, allow_delayed_open=True), f"{netloc}{path}"
    except TypeError:  # pyarrow before 15
        return pafs.S3FileSystem(**options), f"{netloc}{path}"


def open_location(uri: str) -> ObjectPath:
    """The folder ``uri`` names. Raises RemoteError (message without credentials)."""
    parts = _parse(uri.rstrip("/"))
    try:
        fs, key = _filesystem(parts.scheme, parts.netloc, parts.path)
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError: an unknown scheme
        raise RemoteError(
            f"{parts.scheme}://{parts.netloc}{parts.path}: {reason(e)}; {ENDPOINT_HELP}"
        ) from None
    base = f"{parts.scheme}://" if key.startswith(parts.netloc) else f"{parts.scheme}://{parts.netloc}"
    return ObjectPath(fs, base, key)


def check(folder: ObjectPath, *, write: bool = False) -> None:
    """Reach the bucket (and with ``write``, put and delete a probe object): RemoteError if not."""
    from pyarrow.fs import FileType

    try:
        bucket = folder.key.split("/", 1)[0]
        if folder.base.endswith("://") and folder.fs.get_file_info(bucket).type == FileType.NotFound:
            raise RemoteError(
                f"{folder.base}{bucket}: no such bucket (or these credentials cannot see it); create "
                f"it, or name an existing one"
            )
        folder.fs.get_file_info(folder.key)
        if write:
            probe = folder / f".write-test-{os.getpid()}-{time.time_ns()}"
            probe.write_bytes(b"")
            probe.unlink(missing_ok=True)
    except OSError as e:
        what = "write to" if write else "reach"
        raise RemoteError(f"cannot {what} {folder}: {reason(e)}; {ENDPOINT_HELP}") from None


def cache_folder(folder: ObjectPath) -> Path:
    """The local folder for the files of ``folder`` that must be local (the same for every run)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "completep-sweep" / "remote"
    scheme, rest = str(folder).split("://", 1)
    return cache.joinpath(scheme, *[p for p in rest.split("/") if p not in ("", ".", "..")])


# ---------------------------------------------------------------- local copies of some files


def pull(store, name: str) -> None:
    """Copy ``<uri>/<sweep>/<name>`` into the store's cache folder, replacing what is cached there
    (a cached copy the folder no longer has is removed). Nothing for a local store."""
    if not store.remote:
        return
    local = store.root / name
    for stale in (local, *(local.with_name(f"{name}{s}") for s in ("-journal", "-wal", "-shm"))):
        stale.unlink(missing_ok=True)
    try:
        data = (store.folder / name).read_bytes()
    except FileNotFoundError:
        return
    except OSError as e:  # the study is an index of the rows: without it, it is read from them
        print(f"warning: {store.folder / name} not downloaded ({reason(e)})", file=sys.stderr)
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, local)


def push(store, name: str) -> bool:
    """Upload the cached ``name`` (a file, or a folder's files) to the sweep's folder; False (with one
    warning) when that fails: these are copies, the rows are the results."""
    if not store.remote:
        return True
    local = store.root / name
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    try:
        for path in files:
            (store.folder / path.relative_to(store.root).as_posix()).write_bytes(path.read_bytes())
    except OSError as e:
        print(f"warning: {name} not uploaded to {store.folder} ({reason(e)})", file=sys.stderr)
        return False
    return True


def pull_tree(store, name: str) -> None:
    """The files under ``<uri>/<sweep>/<name>/`` into the cache folder (the report, for `sync`)."""
    if not store.remote:
        return
    top = store.folder / name
    for obj in top.rglob("*"):
        local = store.root / name / obj.key[len(top.key) + 1 :]
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(obj.read_bytes())
