import numpy as np
import pytest
import torch

from completep_sweep.data import BUILTIN, DataError, check_source, load_source


def test_builtin_corpus_is_real_prose_with_fixed_split():
    source = load_source(BUILTIN, 256, 64)
    n = len(source.train) + len(source.val)
    assert n > 4_000_000
    assert len(source.val) == pytest.approx(0.1 * n, abs=1)
    text = bytes(source.train[:200_000]).decode("ascii")
    assert "HAMLET" in bytes(source.train).decode("ascii") and " the " in text


def test_batches_are_a_function_of_seed_and_step():
    source = load_source(BUILTIN, 256, 32)
    x1, y1 = source.batch("train", 5, batch_size=4, seq_len=32, seed=0)
    x2, _ = source.batch("train", 5, batch_size=4, seq_len=32, seed=0)
    x3, _ = source.batch("train", 6, batch_size=4, seq_len=32, seed=0)
    x4, _ = source.batch("train", 5, batch_size=4, seq_len=32, seed=1)
    assert x1.shape == (4, 32) and x1.dtype == torch.int64
    assert torch.equal(x1, x2) and not torch.equal(x1, x3) and not torch.equal(x1, x4)
    assert torch.equal(x1[:, 1:], y1[:, :-1])


def test_validation_batches_ignore_seed():
    source = load_source(BUILTIN, 256, 32)
    a, _ = source.batch("val", 0, batch_size=4, seq_len=32, seed=0)
    b, _ = source.batch("val", 0, batch_size=4, seq_len=32, seed=7)
    assert torch.equal(a, b)


def test_token_files(tmp_path):
    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    (np.arange(500, dtype=np.uint16) + 2000).tofile(tmp_path / "val.bin")
    source = load_source(str(tmp_path), 4096, 16)
    x, y = source.batch("train", 0, batch_size=3, seq_len=16, seed=0)
    assert torch.equal(y, x + 1)  # consecutive tokens
    xv, _ = source.batch("val", 0, batch_size=3, seq_len=16)
    assert xv.min() >= 2000


def test_missing_token_file_names_it(tmp_path):
    np.zeros(100, dtype=np.uint16).tofile(tmp_path / "train.bin")
    with pytest.raises(DataError, match="val.bin"):
        load_source(str(tmp_path), 4096, 16)
    with pytest.raises(DataError, match="val.bin"):
        check_source(str(tmp_path), 4096)


def test_builtin_needs_byte_vocab():
    with pytest.raises(DataError, match="vocab_size"):
        load_source(BUILTIN, 100, 16)


def test_split_shorter_than_sequence(tmp_path):
    np.zeros(100, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.zeros(10, dtype=np.uint16).tofile(tmp_path / "val.bin")
    with pytest.raises(DataError, match="val"):
        load_source(str(tmp_path), 4096, 16)
