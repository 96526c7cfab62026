"""Token sources: the built-in byte-level Shakespeare corpus, or nanoGPT-style token files.

Batches are a pure function of (seed, step): the batch at step k is the same whatever ran before,
so every parameterization and shape sees the same data, and a restarted trial sees the same data.
Validation batches do not depend on the seed, so validation losses are comparable across seeds.

Token files are checked once, up front, by the driver (``check_source``): both files present, whole
uint16 tokens that look like uint16 token ids (not text, not int32/int64/float32 values: see
``_format_problem``), long enough for a sequence, every id below ``vocab_size``. Their content hash
(``fingerprint``) is part of every trial's id, so rows computed on other data are never reused.
Both come from one read of each file, cached by (path, size, mtime) so a large corpus is read once.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .errors import FieldError

BUILTIN = "shakespeare"
BYTE_VOCAB = 256
VAL_FRACTION = 0.1
SPLITS = ("train", "val")
_VAL_SEED = 0x5EED  # fixed: validation batches are identical for every trial
_CHUNK = 1 << 24  # tokens per read when scanning a token file
_SAMPLE = 1 << 20  # leading tokens whose bytes are profiled: a file's format is the same throughout
_SCAN_VERSION = 2  # bump when _scan's fields change: cached entries of another version are rescanned
_WRITE_IDS = "np.asarray(ids, dtype=np.uint16).tofile(path)"


class DataError(FieldError):
    """Bad data setting; ``field`` names the setting (data, vocab_size, seq_len), the message the fix."""


@dataclass(frozen=True)
class TokenSource:
    name: str
    train: np.ndarray
    val: np.ndarray
    vocab_size: int

    def batch(
        self,
        split: str,
        index: int,
        *,
        batch_size: int,
        seq_len: int,
        seed: int = 0,
        rank: int = 0,
        ranks: int = 1,
    ):
        """(x, y) int64 tensors of shape (batch_size / ranks, seq_len); y is x shifted by one token.

        ``rank`` of ``ranks`` (data-parallel workers) gets its contiguous slice of the same global
        batch, so N workers together see exactly the batch one worker would.
        """
        if batch_size % ranks:
            raise ValueError(f"batch_size {batch_size} does not split evenly over {ranks} workers")
        tokens = self.train if split == "train" else self.val
        rng = np.random.default_rng((seed if split == "train" else _VAL_SEED, index))
        share = batch_size // ranks
        starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch_size)
        starts = starts[rank * share : (rank + 1) * share]  # the whole batch drawn, this rank's slice kept
        window = tokens[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64)  # (B, T+1)
        t = torch.from_numpy(window)
        return t[:, :-1], t[:, 1:]


@lru_cache(maxsize=1)
def _builtin_bytes() -> np.ndarray:
    blob = resources.files("completep_sweep").joinpath("corpus/shakespeare.txt.gz").read_bytes()
    return np.frombuffer(gzip.decompress(blob), dtype=np.uint8)


def _builtin_splits() -> dict[str, np.ndarray]:
    data = _builtin_bytes()
    cut = int(len(data) * (1 - VAL_FRACTION))
    return {"train": data[:cut], "val": data[cut:]}


def load_source(data: str, vocab_size: int, seq_len: int = 0) -> TokenSource:
    """Open a preset's ``data`` setting. Cheap checks only (a worker never rescans a large corpus):
    the driver ran ``check_source`` before the trial was scheduled."""
    if data == BUILTIN:
        check_source(data, vocab_size, seq_len)
        splits = _builtin_splits()
    else:
        path = Path(data).expanduser()
        for split in SPLITS:
            _check_file(path / f"{split}.bin", path)
        splits = {s: np.memmap(path / f"{s}.bin", dtype=np.uint16, mode="r") for s in SPLITS}
        _check_lengths(data, {s: len(v) for s, v in splits.items()}, seq_len)
    return TokenSource(data, splits["train"], splits["val"], vocab_size)


def check_source(data: str, vocab_size: int, seq_len: int = 0) -> None:
    """Everything a trial will need from its data, checked before any compute; DataError names the fix."""
    if data == BUILTIN:
        if vocab_size < BYTE_VOCAB:
            raise DataError(
                "vocab_size",
                f"vocab_size {vocab_size} is too small for the byte-level corpus "
                f"'{BUILTIN}'; set vocab_size = 256",
            )
        lengths = {s: len(v) for s, v in _builtin_splits().items()}
    else:
        if vocab_size > 1 << 16:
            raise DataError(
                "vocab_size",
                f"vocab_size {vocab_size} does not fit uint16 token files; use vocab_size <= 65536",
            )
        info = inspect_tokens(data)
        lengths = {s: info[s]["tokens"] for s in SPLITS}
        for split in SPLITS:
            file, scan = Path(data) / f"{split}.bin", info[split]
            problem = _format_problem(scan)
            if problem is None and scan["max_id"] >= vocab_size and _halves_differ(scan):
                problem = (  # ids out of range AND a 4-byte layout: the file, not vocab_size, is wrong
                    f"holds values up to {scan['max_id']} (not below vocab_size {vocab_size}) and its even "
                    "and odd 2-byte halves differ in kind, as in a float32 or other 4-byte file; "
                    + _RE_EXPORT
                )
            if problem is not None:
                raise DataError("data", f"{file} does not look like uint16 token ids: {problem}")
            if scan["max_id"] >= vocab_size:
                raise DataError(
                    "vocab_size",
                    f"{file} holds token id {scan['max_id']}, "
                    f"not below vocab_size {vocab_size}; raise vocab_size above it "
                    "or re-tokenize the data",
                )
    _check_lengths(data, lengths, seq_len)


def _check_lengths(data: str, lengths: dict[str, int], seq_len: int) -> None:
    for split, n in lengths.items():
        if n <= seq_len + 1:
            raise DataError(
                "seq_len",
                f"the {split} split of {data!r} has {n} tokens, not more than seq_len + 1 "
                f"= {seq_len + 1}; lower seq_len or use more data",
            )


def _check_file(file: Path, path: Path) -> None:
    if not file.is_file():
        raise DataError(
            "data",
            f"{path} has no {file.name}; point data at a directory with train.bin and "
            f"val.bin (uint16 token files), or use data = '{BUILTIN}'",
        )
    size = file.stat().st_size
    if size == 0 or size % 2:
        what = "is empty" if size == 0 else f"has {size} bytes, an odd number"
        raise DataError(
            "data",
            f"{file} {what}: token files hold uint16 tokens (2 bytes each); "
            "re-export it, e.g. np.array(ids, dtype=np.uint16).tofile(path)",
        )


def inspect_tokens(data: str) -> dict[str, dict]:
    """Per split: tokens, largest id and sha256 of a token directory's ``train.bin``/``val.bin``.

    Raises DataError for a missing, empty or odd-sized file (uint16 tokens are two bytes each).
    """
    path = Path(data).expanduser()
    missing = [f"{s}.bin" for s in SPLITS if not (path / f"{s}.bin").is_file()]
    if missing:  # name both when both are missing
        _check_file(path / " or ".join(missing), path)
    out = {}
    for split in SPLITS:
        _check_file(path / f"{split}.bin", path)
        out[split] = _cached_scan(path / f"{split}.bin")
    return out


def fingerprint(data: str) -> str:
    """Content hash of the data ('' for the built-in corpus, which is versioned with the package)."""
    if data == BUILTIN:
        return ""
    info = inspect_tokens(data)
    return hashlib.sha256("".join(info[s]["sha256"] for s in SPLITS).encode()).hexdigest()[:16]


def resolve_data(data: str) -> str:
    """Token-file directories as absolute paths: workers may run in another working directory."""
    return data if data == BUILTIN else str(Path(data).expanduser().resolve())


# ---------------------------------------------------------------- the scan, cached


def _cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "completep-sweep" / "token-files.json"


def _scan(file: Path) -> dict:
    tokens = np.memmap(file, dtype=np.uint16, mode="r")
    digest, max_id = hashlib.sha256(), 0
    for start in range(0, len(tokens), _CHUNK):
        chunk = np.asarray(tokens[start : start + _CHUNK])
        digest.update(chunk.tobytes())
        max_id = max(max_id, int(chunk.max()))
    return {
        "version": _SCAN_VERSION,
        "tokens": int(len(tokens)),
        "max_id": max_id,
        "sha256": digest.hexdigest(),
        "profile": _profile(np.asarray(tokens[:_SAMPLE])),
    }


def _profile(sample: np.ndarray) -> dict:
    """What ``_format_problem`` judges a file's layout by, from its leading tokens.

    ``zeros[k]``: zero halves at positions k mod 4 (a little-endian int32 puts its always-zero high
    half at odd positions, an int64 at positions 1, 2, 3 mod 4); ``printable``: bytes that are
    printable ASCII or whitespace (text); ``parity_tv``: total-variation distance between the high-byte
    histograms of even- and odd-position halves: ~0 for token ids, since a token is as likely at an
    even position as at an odd one (high bytes only: consecutive ids 0, 1, 2, ... alternate their low
    byte's parity), large for 4-byte values such as float32.
    """
    groups = len(sample) // 4
    halves = sample[: 4 * groups]
    raw = halves.view(np.uint8)  # bytes 1 and 3 mod 4: the high bytes of an even and an odd half
    even, odd = (np.bincount(raw[k::4], minlength=256) / max(1, 2 * groups) for k in (1, 3))
    counts = np.bincount(raw, minlength=256)
    return {
        "groups": int(groups),
        "zeros": [int(np.count_nonzero(halves[k::4] == 0)) for k in range(4)],
        "bytes": int(raw.size),
        "printable": int(counts[32:127].sum() + counts[[9, 10, 13]].sum()),
        "parity_tv": float(np.abs(even - odd).sum() / 2),
    }


_RE_EXPORT = f"re-export it as uint16, e.g. {_WRITE_IDS}"
_MIN_GROUPS = 128  # 512 halves: below this the layout is not judged (a legitimate id 0 could fool it)


def _format_problem(scan: dict) -> str | None:
    """Why a file of whole uint16 values is not uint16 token ids, and the fix; None when it plausibly is.

    Text: >= 95% printable bytes (uint16 ids almost never have both bytes printable). 4- and 8-byte
    values: a position mod 4 has >= 99% zero halves while one of the other parity has <= 50%;
    uint16 ids, id 0 included, are zero equally often at every position, so this takes a real
    layout, not a frequent id 0 (a file of zeros, say, is judged by the vocabulary check alone).
    """
    p = scan["profile"]
    if p["bytes"] >= 256 and p["printable"] >= 0.95 * p["bytes"]:
        share = 100 * p["printable"] / p["bytes"]
        return (
            f"{share:.0f}% of its bytes are printable ASCII, so it looks like text; tokenize it and "
            f"write the ids as uint16, e.g. {_WRITE_IDS}"
        )
    if p["groups"] < _MIN_GROUPS:
        return None
    zero = [z / p["groups"] >= 0.99 for z in p["zeros"]]
    rare = [z / p["groups"] <= 0.5 for z in p["zeros"]]
    if not any(zero[i] and rare[j] for i in range(4) for j in range(4) if (i - j) % 2):
        return None
    if zero[1] and zero[3] and not zero[0]:  # little-endian integers: the high halves are 0
        kind = "an int64" if zero[2] else "an int32"
    elif zero[0] and zero[2] and not (zero[1] or zero[3]):  # floats of small integers: low mantissa 0
        kind = "a float32"
    elif zero[0] and zero[1] and not zero[3]:
        kind = "a float64"
    else:
        kind = "a 4- or 8-byte"
    return f"every other 2-byte half is 0, as in {kind} file; {_RE_EXPORT}"


def _halves_differ(scan: dict) -> bool:
    p = scan["profile"]
    return p["groups"] >= 8 * _MIN_GROUPS and p["parity_tv"] >= 0.5


def _cached_scan(file: Path) -> dict:
    """``_scan`` once per (path, size, mtime): a re-run, a re-validate or a worker pays nothing.

    An entry of another ``_SCAN_VERSION`` (one written before a field was added) is scanned again."""
    stat = file.stat()
    key = f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_file = _cache_path()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    entry = cache.get(key)
    if not isinstance(entry, dict) or entry.get("version") != _SCAN_VERSION:
        cache = {k: v for k, v in cache.items() if not k.startswith(f"{file.resolve()}:")}  # stale entries
        cache[key] = _scan(file)
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only home: scan again next time, nothing else changes
    return cache[key]
