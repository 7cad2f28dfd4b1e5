"""nn.data: the data sets that need no download, the local-file loaders (CIFAR-10's
binary files, CSV, npz: all written by the tests), the split and the Standardizer."""
import random
import sys

import numpy as np
import pytest

import nnumba as nn
from nnumba import data as D


# ---- train_val_test_split --------------------------------------------------------------------

def _split_indices(n, **kw):
    """The split of X = arange(n) (so each part's X is its sample indices)."""
    X = np.arange(n)
    y = kw.pop("y", np.zeros(n, dtype=np.int64))
    return D.train_val_test_split(X, y, **kw)


@pytest.mark.parametrize("n, val, test, sizes", [
    (50, 0.1, 0.2, (35, 5, 10)),
    (11, 0.1, 0.2, (6, 2, 3)),      # fractions rounded up: ceil(1.1) = 2, ceil(2.2) = 3
    (50, 7, 3, (40, 7, 3)),          # counts
    (50, 0, 0.5, (25, 0, 25)),       # 0: an empty part on purpose
    (50, np.int64(4), np.float32(0.25), (33, 4, 13)),
])
def test_split_sizes_disjoint_and_complete(n, val, test, sizes):
    X_tr, y_tr, X_val, y_val, X_te, y_te = _split_indices(n, val_size=val, test_size=test, seed=3)
    assert (len(X_tr), len(X_val), len(X_te)) == sizes
    assert (len(y_tr), len(y_val), len(y_te)) == sizes
    together = np.concatenate([X_tr, X_val, X_te])
    np.testing.assert_array_equal(np.sort(together), np.arange(n))  # disjoint, nothing lost


def test_split_keeps_rows_together_and_shapes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4, 2)).astype(np.float32)
    y = rng.normal(size=(30, 3))
    X_tr, y_tr, X_val, y_val, X_te, y_te = D.train_val_test_split(X, y, val_size=0, test_size=6)
    assert X_tr.shape == (24, 4, 2) and X_val.shape == (0, 4, 2) and X_te.shape == (6, 4, 2)
    assert X_tr.dtype == np.float32 and y_val.shape == (0, 3)
    for Xp, yp in ((X_tr, y_tr), (X_te, y_te)):  # each row still has its own target
        for xi, yi in zip(Xp, yp):
            i = int(np.flatnonzero((X == xi).all(axis=(1, 2)))[0])
            np.testing.assert_array_equal(y[i], yi)


def test_split_is_reproducible_by_seed():
    y = np.arange(40) % 3
    a = _split_indices(40, y=y, seed=5)
    b = _split_indices(40, y=y, seed=5)
    c = _split_indices(40, y=y, seed=6)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, v) for u, v in zip(a, c))
    # each part comes shuffled, not sorted by class or by index
    assert not np.all(np.diff(a[0]) > 0)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("counts, val, test", [
    ((90, 10), 0.1, 0.2),
    ((50, 30, 15, 4, 1), 0.15, 0.25),
    ((7, 7, 7), 4, 5),
    ((33, 2, 60, 5), 0.3, 0.1),
])
def test_stratified_split_keeps_class_proportions_within_one_sample(seed, counts, val, test):
    y = np.repeat(np.arange(len(counts)), counts)
    n = y.size
    y = np.random.default_rng(seed).permutation(y)
    parts = D.train_val_test_split(np.arange(n), y, val_size=val, test_size=test, seed=seed)
    sizes = [len(parts[0]), len(parts[2]), len(parts[4])]
    assert sizes[1] == (val if isinstance(val, int) else int(np.ceil(val * n)))
    for part_y, size in zip(parts[1::2], sizes):
        got = np.bincount(part_y, minlength=len(counts))
        ideal = np.array(counts) * size / n
        assert np.all(np.abs(got - ideal) <= 1), (got, ideal)
    for part_x, part_y in zip(parts[0::2], parts[1::2]):
        np.testing.assert_array_equal(y[part_x], part_y)


def test_unstratified_split_does_not_keep_proportions():
    # the check above is not vacuous: a plain random split of the same data misses
    y = np.repeat([0, 1], [90, 10])
    worst = 0.0
    for seed in range(20):
        parts = D.train_val_test_split(np.arange(100), y, val_size=0.1, test_size=0.2, seed=seed,
                                       stratify=False)
        for part_y in parts[1::2]:
            worst = max(worst, abs(np.sum(part_y == 1) - 0.1 * len(part_y)))
    assert worst > 1


def test_stratify_auto_follows_the_label_dtype():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    labels = rng.integers(0, 3, size=60)
    auto = D.train_val_test_split(X, labels, seed=2)
    forced = D.train_val_test_split(X, labels, seed=2, stratify=True)
    for u, v in zip(auto, forced):
        np.testing.assert_array_equal(u, v)
    targets = rng.normal(size=(60, 1))
    auto = D.train_val_test_split(X, targets, seed=2)
    plain = D.train_val_test_split(X, targets, seed=2, stratify=False)
    for u, v in zip(auto, plain):
        np.testing.assert_array_equal(u, v)


def test_stratified_split_of_one_hot_labels():
    classes = np.repeat([0, 1, 2], [40, 16, 24])
    onehot = np.eye(3, dtype=np.int64)[classes]
    parts = D.train_val_test_split(np.arange(80), onehot, val_size=0.1, test_size=0.25, seed=0)
    for part_y in parts[1::2]:
        got = part_y.sum(axis=0)
        assert np.all(np.abs(got - np.array([40, 16, 24]) * len(part_y) / 80) <= 1)


@pytest.mark.parametrize("kw, error, match", [
    (dict(val_size=0.5, test_size=0.5), ValueError, r"leave no training samples of the 10 \(5 \+ 5"),
    (dict(val_size=0, test_size=10), ValueError, "test_size=10 .* leaves no training samples"),
    (dict(test_size=11), ValueError, r"test_size as a count must be in \[0, 10\].*got 11"),
    (dict(val_size=-1), ValueError, r"val_size as a count must be in \[0, 10\]"),
    (dict(test_size=1.0), ValueError, r"test_size as a fraction must be in \[0, 1\), got 1.0"),
    (dict(val_size=float("nan")), ValueError, "val_size as a fraction"),
    (dict(val_size=True), TypeError, "val_size must be a fraction"),
    (dict(test_size="0.2"), TypeError, "test_size must be a fraction"),
    (dict(stratify="yes"), ValueError, "stratify must be 'auto', True or False, got 'yes'"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
])
def test_split_refuses_bad_sizes(kw, error, match):
    with pytest.raises(error, match=match):
        _split_indices(10, **kw)


def test_split_refuses_bad_arrays():
    with pytest.raises(ValueError, match="X has 10 samples but y has 9"):
        D.train_val_test_split(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="X has no samples"):
        D.train_val_test_split(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match="y must be 1-D .* or 2-D"):
        D.train_val_test_split(np.zeros((10, 2)), np.zeros((10, 2, 2)))
    with pytest.raises(TypeError, match="X must be an array"):
        D.train_val_test_split(5, np.zeros(1))


# ---- Standardizer ----------------------------------------------------------------------------

def test_standardizer_on_train_and_test():
    rng = np.random.default_rng(0)
    X_train = rng.normal(3.0, [1.0, 5.0, 0.1], size=(200, 3))
    X_test = rng.normal(-1.0, 2.0, size=(50, 3))
    s = D.Standardizer()
    Z = s.fit_transform(X_train)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(s.mean_, X_train.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(s.scale_, X_train.std(axis=0), rtol=1e-14)
    # the test part with the training part's statistics, not its own
    np.testing.assert_allclose(s.transform(X_test),
                               (X_test - X_train.mean(axis=0)) / X_train.std(axis=0), rtol=1e-12)
    assert abs(s.transform(X_test).mean()) > 0.5
    np.testing.assert_allclose(s.inverse_transform(s.transform(X_test)), X_test, rtol=1e-12)
    from sklearn.preprocessing import StandardScaler

    np.testing.assert_allclose(Z, StandardScaler().fit_transform(X_train), rtol=1e-12, atol=1e-12)


def test_standardizer_per_channel_on_sequences():
    rng = np.random.default_rng(1)
    X = rng.normal([0.0, 10.0], [1.0, 3.0], size=(20, 15, 2)).astype(np.float32)
    s = D.Standardizer().fit(X)
    assert s.mean_.shape == (2,) and s.scale_.shape == (2,) and s.n_features_ == 2
    np.testing.assert_allclose(s.mean_, X.reshape(-1, 2).astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(s.scale_, X.reshape(-1, 2).astype(np.float64).std(axis=0), rtol=1e-6)
    Z = s.transform(X)
    assert Z.dtype == np.float32 and Z.shape == X.shape
    np.testing.assert_allclose(Z.reshape(-1, 2).mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Z.reshape(-1, 2).std(axis=0), 1, rtol=1e-5)
    # per channel, not per (step, channel): one step alone is not standardised
    assert abs(Z[:, 0, :].mean()) > 1e-3
    back = s.inverse_transform(Z)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, X, rtol=1e-5, atol=1e-5)
    # other lengths of sequence use the same per-channel statistics
    assert s.transform(X[:, :4]).shape == (20, 4, 2)


def test_standardizer_constant_feature_and_dtypes():
    X = np.column_stack([np.full(10, 7.25), np.arange(10.0)])
    s = D.Standardizer().fit(X)
    assert s.scale_[0] == 1.0 and s.mean_[0] == 7.25
    Z = s.transform(X)
    assert np.all(Z[:, 0] == 0) and np.isfinite(Z).all()
    assert Z.dtype == np.float64
    assert s.transform(X.astype(np.float32)).dtype == np.float32
    assert D.Standardizer().fit_transform(np.arange(12).reshape(6, 2)).dtype == np.float64


def test_standardizer_refusals():
    s = D.Standardizer()
    with pytest.raises(ValueError, match="not fitted yet"):
        s.transform(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="not fitted yet"):
        s.inverse_transform(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least 2-D .* got 1-D"):
        s.fit(np.zeros(5))
    with pytest.raises(ValueError, match="contains NaN"):
        s.fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="empty"):
        s.fit(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="numbers"):
        s.fit(np.array([["a"], ["b"]]))
    s.fit(np.random.default_rng(0).normal(size=(8, 3)))
    with pytest.raises(ValueError, match="X has 2 features .* fitted on 3"):
        s.transform(np.zeros((4, 2)))


# ---- load_diabetes ---------------------------------------------------------------------------

def test_load_diabetes():
    from sklearn.datasets import load_diabetes

    X_tr, y_tr, X_te, y_te = D.load_diabetes()
    assert X_tr.shape == (353, 10) and X_te.shape == (89, 10)
    assert y_tr.shape == (353, 1) and y_te.shape == (89, 1)
    assert {a.dtype for a in (X_tr, y_tr, X_te, y_te)} == {np.dtype(np.float32)}
    # raw targets, not standardised
    y_all = np.concatenate([y_tr, y_te]).ravel()
    ref = load_diabetes()
    np.testing.assert_array_equal(np.sort(y_all), np.sort(ref.target.astype(np.float32)))
    assert y_all.min() == 25 and y_all.max() == 346
    np.testing.assert_array_equal(np.sort(np.concatenate([X_tr, X_te]), axis=0),
                                  np.sort(ref.data.astype(np.float32), axis=0))
    again = D.load_diabetes()
    np.testing.assert_array_equal(again[0], X_tr)
    other = D.load_diabetes(test_size=100, seed=1)
    assert other[2].shape == (100, 10) and not np.array_equal(other[0][:10], X_tr[:10])
    with pytest.raises(ValueError, match="test_size"):
        D.load_diabetes(test_size=1.5)


def test_load_diabetes_trains_standardised():
    X_tr, y_tr, X_te, y_te = D.load_diabetes()
    ys = D.Standardizer().fit(y_tr)
    model = nn.Sequential([nn.Dense(10, 1)], backend="numpy", dtype="float32", seed=0)
    model.compile(loss="mse", optimizer=nn.optim.Adam(lr=0.05))
    model.fit(D.Standardizer().fit(X_tr).transform(X_tr), ys.transform(y_tr), epochs=40,
              batch_size=64)
    assert model.evaluate(D.Standardizer().fit(X_tr).transform(X_tr), ys.transform(y_tr))["loss"] < 0.6


# ---- load_mnist1d ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist1d_reference():
    pytest.importorskip("mnist1d")
    from mnist1d.data import get_dataset_args, make_dataset

    return make_dataset(get_dataset_args())


def test_load_mnist1d_equals_make_dataset(mnist1d_reference, tmp_path, monkeypatch):
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("load_mnist1d tried to download")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.chdir(tmp_path)
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    X_tr, y_tr, X_te, y_te = D.load_mnist1d()
    # the global generators are left as they were (make_dataset reseeds them)
    assert np.random.random() == expected_np and random.random() == expected_py
    assert list(tmp_path.iterdir()) == []  # nothing cached on disk
    ref = mnist1d_reference
    assert X_tr.shape == (4000, 40) and X_te.shape == (1000, 40)
    assert X_tr.dtype == np.float32 and y_tr.dtype == np.int64
    np.testing.assert_array_equal(X_tr, ref["x"].astype(np.float32))
    np.testing.assert_array_equal(X_te, ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(y_tr, ref["y"])
    np.testing.assert_array_equal(y_te, ref["y_test"])
    assert set(np.unique(y_tr)) == set(range(10))


def test_load_mnist1d_sequence_and_size():
    pytest.importorskip("mnist1d")
    from mnist1d.data import get_dataset_args, make_dataset

    X_tr, y_tr, X_te, y_te = D.load_mnist1d(shape="sequence", n_samples=200)
    assert X_tr.shape == (160, 40, 1) and X_te.shape == (40, 40, 1)
    args = get_dataset_args()
    args.num_samples = 200
    ref = make_dataset(args)
    np.testing.assert_array_equal(X_tr[:, :, 0], ref["x"].astype(np.float32))
    np.testing.assert_array_equal(y_te, ref["y_test"])


def test_load_mnist1d_resplit():
    pytest.importorskip("mnist1d")
    a = D.load_mnist1d(test_size=0.25, seed=1, n_samples=200)
    b = D.load_mnist1d(test_size=0.25, seed=1, n_samples=200)
    c = D.load_mnist1d(test_size=0.25, seed=2, n_samples=200)
    assert a[0].shape == (150, 40) and a[2].shape == (50, 40)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[3], c[3])
    counts = np.bincount(a[3], minlength=10)
    assert counts.min() >= 4 and counts.max() <= 6  # stratified: 5 per digit, within one
    everything = np.sort(np.concatenate([a[0], a[2]]), axis=0)
    orig = D.load_mnist1d(n_samples=200)
    np.testing.assert_array_equal(everything, np.sort(np.concatenate([orig[0], orig[2]]), axis=0))


def test_load_mnist1d_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match=r'mnist1d package.*pip install "nnumba\[data\]"'):
        D.load_mnist1d()


@pytest.mark.parametrize("kw, error, match", [
    (dict(shape="image"), ValueError, "shape must be 'flat' or 'sequence', got 'image'"),
    (dict(n_samples=105), ValueError, "multiple of 10 .*got 105"),
    (dict(n_samples=0), ValueError, "n_samples must be >= 10"),
    (dict(test_size=1.5), ValueError, "test_size as a fraction"),
    (dict(test_size=5000), ValueError, "leaves no training samples"),
])
def test_load_mnist1d_refuses_bad_arguments(kw, error, match):
    with pytest.raises(error, match=match):
        D.load_mnist1d(**kw)


# ---- load_cifar10 ----------------------------------------------------------------------------

FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
RECORDS = [2, 1, 3, 1, 2, 2]  # records per file in the tiny data sets written here


def _record(label, image):
    """One CIFAR-10 record as the format defines it: the label byte, then the red,
    green and blue 32x32 planes, each row by row."""
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    return bytes([label]) + b"".join(image[:, :, ch].tobytes(order="C") for ch in range(3))


def _write_cifar(directory, counts=RECORDS, seed=0):
    """Random tiny CIFAR-10 files; returns the images (uint8) and labels written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    for name, n in zip(FILES, counts):
        imgs = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        labs = rng.integers(0, 10, size=n)
        (directory / name).write_bytes(b"".join(_record(int(l), im) for l, im in zip(labs, imgs)))
        images.append(imgs)
        labels.append(labs)
    n_train = sum(counts[:5])
    return (np.concatenate(images[:5]), np.concatenate(labels[:5]), images[5], labels[5], n_train)


def test_cifar10_reads_the_records(tmp_path):
    imgs_tr, labs_tr, imgs_te, labs_te, n_train = _write_cifar(tmp_path)
    X_tr, y_tr, X_te, y_te = D.load_cifar10(tmp_path)
    assert X_tr.shape == (n_train, 32, 32, 3) == (9, 32, 32, 3) and X_te.shape == (2, 32, 32, 3)
    assert X_tr.dtype == np.float32 and y_tr.dtype == np.int64
    np.testing.assert_array_equal(y_tr, labs_tr)  # files in order, records in order
    np.testing.assert_array_equal(y_te, labs_te)
    np.testing.assert_array_equal(X_tr, imgs_tr.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(X_te, imgs_te.astype(np.float32) / np.float32(255))
    assert X_tr.min() >= 0 and X_tr.max() <= 1
    flat = D.load_cifar10(tmp_path, shape="flat", dtype=np.float64)
    assert flat[0].shape == (9, 3072) and flat[0].dtype == np.float64
    np.testing.assert_array_equal(flat[0], (imgs_tr / 255.0).reshape(9, 3072))


@pytest.mark.parametrize("row, col, channel", [(0, 0, 0), (0, 31, 1), (31, 0, 2), (5, 17, 1),
                                               (31, 31, 2)])
def test_cifar10_pixel_lands_at_its_row_column_and_channel(tmp_path, row, col, channel):
    """Bytes written by offset, independent of any image layout: byte
    1 + 1024 channel + 32 row + col of the second record of data_batch_3.bin."""
    zero = bytes(3073)
    for name, n in zip(FILES, RECORDS):
        (tmp_path / name).write_bytes(zero * n)
    record = bytearray(zero)
    record[0] = 7
    record[1 + 1024 * channel + 32 * row + col] = 255
    if (row, col) != (0, 0):
        record[1 + 1024 * channel + 32 * row + col - 1] = 51
    (tmp_path / "data_batch_3.bin").write_bytes(zero + bytes(record) + zero)
    X_tr, y_tr, _, _ = D.load_cifar10(tmp_path)
    i = RECORDS[0] + RECORDS[1] + 1  # the record's index in the training set
    assert y_tr[i] == 7 and y_tr.sum() == 7
    assert X_tr[i, row, col, channel] == 1.0
    if (row, col) != (0, 0):  # the byte before it: the same row, column - 1 (or the row above)
        r, c = divmod(32 * row + col - 1, 32)
        assert X_tr[i, r, c, channel] == np.float32(51) / np.float32(255)
        assert np.count_nonzero(X_tr) == 2
    else:
        assert np.count_nonzero(X_tr) == 1
    flat = D.load_cifar10(tmp_path, shape="flat")[0]
    assert flat[i, 96 * row + 3 * col + channel] == 1.0


def test_cifar10_reads_in_chunks(tmp_path, monkeypatch):
    _write_cifar(tmp_path, counts=[5, 1, 1, 1, 1, 3])
    whole = D.load_cifar10(tmp_path)
    monkeypatch.setattr(D, "_CIFAR10_CHUNK", 2)
    chunked = D.load_cifar10(tmp_path)
    for u, v in zip(whole, chunked):
        np.testing.assert_array_equal(u, v)
    # a bad label in a later chunk is reported with its own record number
    path = tmp_path / "data_batch_1.bin"
    raw = bytearray(path.read_bytes())
    raw[4 * 3073] = 10
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"data_batch_1.bin: record 4 .* has label 10"):
        D.load_cifar10(tmp_path)


def test_cifar10_in_the_archive_folder(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-bin")
    assert D.load_cifar10(tmp_path)[0].shape == (9, 32, 32, 3)


@pytest.mark.parametrize("name", ["data_batch_4.bin", "test_batch.bin"])
def test_cifar10_missing_file(tmp_path, name):
    _write_cifar(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(ValueError, match=f"{name}: no such file") as info:
        D.load_cifar10(tmp_path)
    assert isinstance(info.value, FileNotFoundError)


def test_cifar10_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="nowhere: no such directory"):
        D.load_cifar10(tmp_path / "nowhere")


def test_cifar10_truncated_file(tmp_path):
    _write_cifar(tmp_path)
    path = tmp_path / "data_batch_2.bin"
    path.write_bytes(path.read_bytes() + bytes(100))  # 1 record + 100 bytes
    with pytest.raises(ValueError, match=r"data_batch_2.bin: 3173 bytes is not a whole number of "
                                         r"3073-byte records.*record 1 .* is truncated, 100 of"):
        D.load_cifar10(tmp_path)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ValueError, match=r"data_batch_2.bin: 3000 bytes .* record 0"):
        D.load_cifar10(tmp_path)


def test_cifar10_empty_file(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "test_batch.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="test_batch.bin is empty: it holds no records"):
        D.load_cifar10(tmp_path)


@pytest.mark.parametrize("label", [10, 99, 255])
def test_cifar10_label_out_of_range(tmp_path, label):
    _write_cifar(tmp_path)
    path = tmp_path / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[3073] = label  # the second record's label byte
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=rf"test_batch.bin: record 1 \(counting from 0, byte 3073\) "
                                         rf"has label {label}; CIFAR-10 labels are 0..9"):
        D.load_cifar10(tmp_path)


def test_cifar10_refuses_bad_arguments(tmp_path):
    _write_cifar(tmp_path)
    with pytest.raises(ValueError, match="shape must be 'image' or 'flat'"):
        D.load_cifar10(tmp_path, shape="chw")
    with pytest.raises(TypeError, match="dtype must be a floating-point type"):
        D.load_cifar10(tmp_path, dtype=np.uint8)
    with pytest.raises(TypeError, match="dtype must be a floating-point type"):
        D.load_cifar10(tmp_path, dtype="no such type")


# ---- load_csv --------------------------------------------------------------------------------

def _write(path, text):
    path.write_text(text)
    return path


def test_csv_without_header(tmp_path):
    p = _write(tmp_path / "a.csv", "1,2,0\n3.5,-4,1\n5,6e1,2\n")
    X, y = D.load_csv(p)
    assert X.dtype == np.float32 and X.shape == (3, 2)
    np.testing.assert_array_equal(X, [[1, 2], [3.5, -4], [5, 60]])
    assert y.dtype == np.int64 and y.shape == (3,)
    np.testing.assert_array_equal(y, [0, 1, 2])


def test_csv_with_header_and_target_by_name_or_index(tmp_path):
    p = _write(tmp_path / "h.csv", "# a comment\nlabel, x1 ,x2\n\n1,0.5,0.25\n0,1.5,2.5 # note\n")
    X, y = D.load_csv(p, target="label")
    np.testing.assert_array_equal(X, [[0.5, 0.25], [1.5, 2.5]])
    np.testing.assert_array_equal(y, [1, 0])
    X2, y2 = D.load_csv(p, target=0)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    X3, y3 = D.load_csv(p, target="x1", task="regression")  # a middle column
    np.testing.assert_array_equal(X3, [[1, 0.25], [0, 2.5]])
    assert y3.dtype == np.float32 and y3.shape == (2, 1)
    np.testing.assert_array_equal(y3[:, 0], [0.5, 1.5])
    np.testing.assert_array_equal(D.load_csv(p, target=-2, task="regression")[1], y3)
    p = _write(tmp_path / "q.csv", '"a","b"\n1,2\n')
    assert D.load_csv(p, target="b")[1].tolist() == [2]


def test_csv_header_choices(tmp_path):
    numeric_names = _write(tmp_path / "n.csv", "1990,2000,2010\n1,2,3\n4,5,6\n")
    X, y = D.load_csv(numeric_names)  # inferred: a first row of numbers is data
    assert X.shape == (3, 2)
    X, y = D.load_csv(numeric_names, header=True, target="2010")
    np.testing.assert_array_equal(X, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(y, [3, 6])
    names = _write(tmp_path / "t.csv", "a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"t.csv, line 1, column 1: 'a' is not a number"):
        D.load_csv(names, header=False)
    with pytest.raises(ValueError, match="target 'b' is a column name, but the file has no header"):
        D.load_csv(names, header=False, target="b")
    with pytest.raises(ValueError, match="pass header=True"):
        D.load_csv(numeric_names, target="2010")


def test_csv_task_inference(tmp_path):
    rows = "\n".join(f"{i * 0.5},{i % 3}" for i in range(30))
    X, y = D.load_csv(_write(tmp_path / "c.csv", rows))
    assert y.dtype == np.int64 and y.shape == (30,) and set(y) == {0, 1, 2}
    X, y = D.load_csv(_write(tmp_path / "c2.csv", "1,2.0\n2,-1.0\n"))  # integral floats are labels
    assert y.dtype == np.int64 and y.tolist() == [2, -1]
    X, y = D.load_csv(_write(tmp_path / "r.csv", "1,0.5\n2,1.25\n"))
    assert y.dtype == np.float32 and y.shape == (2, 1)
    many = "\n".join(f"{i},{i}" for i in range(101))  # 101 distinct integers: regression
    X, y = D.load_csv(_write(tmp_path / "m.csv", many))
    assert y.dtype == np.float32 and y.shape == (101, 1)
    hundred = "\n".join(f"{i},{i}" for i in range(100))
    assert D.load_csv(_write(tmp_path / "m100.csv", hundred))[1].dtype == np.int64
    X, y = D.load_csv(tmp_path / "m.csv", task="classification")
    assert y.dtype == np.int64 and y.shape == (101,)
    X, y = D.load_csv(tmp_path / "c.csv", task="regression")
    assert y.dtype == np.float32 and y.shape == (30, 1)
    with pytest.raises(ValueError, match=r"r.csv, line 1, column 2: task='classification' needs "
                                         r"integer class labels, got 0.5"):
        D.load_csv(tmp_path / "r.csv", task="classification")


def test_csv_other_delimiters(tmp_path):
    X, y = D.load_csv(_write(tmp_path / "s.csv", "a;b;c\n1;2;0\n3; 4 ;1\n"), delimiter=";")
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    X, y = D.load_csv(_write(tmp_path / "t.tsv", "a\tb\tc\n1\t2\t0\n3\t4\t1\n"), delimiter="\t",
                      target="a", task="regression")
    np.testing.assert_array_equal(X, [[2, 0], [4, 1]])
    np.testing.assert_array_equal(y, [[1], [3]])
    with pytest.raises(ValueError, match=r"t.tsv, line 4, column 3: the cell is empty"):
        D.load_csv(_write(tmp_path / "t.tsv", "a\tb\tc\n1\t2\t0\n3\t4\t1\n5\t6\t\n"), delimiter="\t")
    with pytest.raises(ValueError, match=r"the delimiter is ';'; the file seems to use ','"):
        D.load_csv(_write(tmp_path / "w.csv", "1,2,3\n4,5,6\n"), delimiter=";")


@pytest.mark.parametrize("text, match", [
    ("1,2,3\n4,5\n", r"bad.csv, line 2: 2 values, but line 1 has 3"),
    ("x,y,z\n1,2,3\n\n# c\n4,5,6,7\n", r"bad.csv, line 5: 4 values, but line 2 has 3"),
    ("1,2,3\n4,five,6\n", r"bad.csv, line 2, column 2: 'five' is not a number"),
    ("a,b\n1,2\n3,\n", r"bad.csv, line 3, column 2: the cell is empty"),
    ("1,2\n3,nan\n", r"bad.csv, line 2, column 2: 'nan' is not a finite number"),
    ("1,inf\n", r"bad.csv, line 1, column 2: 'inf' is not a finite number"),
    ("1,2\n1e39,1\n", r"bad.csv, line 2, column 1: 1e39 overflows float32"),
    ("a,b,c\n1,2\n", r"bad.csv, line 2: 2 values, but line 2 has 2|the header row \(line 1\) names 3"),
    ("a,b\n", r"bad.csv has a header row \(line 1\) but no data rows"),
    ("# only a comment\n\n", r"bad.csv holds no data"),
    ("1\n2\n", r"bad.csv needs at least two columns"),
])
def test_csv_malformed(tmp_path, text, match):
    p = _write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match):
        D.load_csv(p)


def test_csv_refuses_bad_arguments(tmp_path):
    p = _write(tmp_path / "ok.csv", "a,a,c\n1,2,0\n")
    with pytest.raises(ValueError, match=r"no column named 'd'; its columns are \['a', 'a', 'c'\]"):
        D.load_csv(p, target="d")
    with pytest.raises(ValueError, match=r"names 2 columns 'a' \(columns \[1, 2\]\)"):
        D.load_csv(p, target="a")
    with pytest.raises(ValueError, match=r"target must be a column index in \[-3, 2\] .* got 3"):
        D.load_csv(p, target=3)
    with pytest.raises(TypeError, match="target must be a column index"):
        D.load_csv(p, target=1.0)
    with pytest.raises(ValueError, match="header must be 'infer', True or False"):
        D.load_csv(p, header="yes")
    with pytest.raises(ValueError, match="task must be 'auto', 'classification' or 'regression'"):
        D.load_csv(p, task="ranking")
    with pytest.raises(ValueError, match="delimiter must be one character"):
        D.load_csv(p, delimiter=",,")
    with pytest.raises(FileNotFoundError, match="missing.csv: no such file"):
        D.load_csv(tmp_path / "missing.csv")
    with pytest.raises(IsADirectoryError):
        D.load_csv(tmp_path)


# ---- load_npz --------------------------------------------------------------------------------

def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 5, 2))
    labels = np.array([0, 1, 2, 1, 0, 2], dtype=np.int32)
    np.savez(tmp_path / "d.npz", X=X, y=labels, images=X[:, :, :1], targets=X[:, 0, :])
    X2, y2 = D.load_npz(tmp_path / "d.npz")
    assert X2.dtype == np.float32 and X2.shape == (6, 5, 2) and y2.dtype == np.int64
    np.testing.assert_array_equal(X2, X.astype(np.float32))
    np.testing.assert_array_equal(y2, labels)
    X3, y3 = D.load_npz(tmp_path / "d.npz", x="images", y="targets")
    assert X3.shape == (6, 5, 1) and y3.dtype == np.float32 and y3.shape == (6, 2)
    np.savez(tmp_path / "b.npz", X=X[:, :, 0], y=np.array([True, False] * 3))
    assert D.load_npz(tmp_path / "b.npz")[1].tolist() == [1, 0] * 3


@pytest.mark.parametrize("arrays, match", [
    (dict(X=np.zeros((3, 2))), r"must hold arrays 'X' and 'y', found \['X'\]"),
    (dict(X=np.zeros(3), y=np.zeros(3)), "array 'X' must be at least 2-D"),
    (dict(X=np.zeros((3, 2)), y=np.zeros(2)), "array 'X' has 3 samples but 'y' has 2"),
    (dict(X=np.zeros((3, 2)), y=np.zeros((3, 1, 1))), "array 'y' must be 1-D"),
    (dict(X=np.zeros((0, 2)), y=np.zeros(0)), "array 'X' is empty"),
    (dict(X=np.array([[1.0, np.nan]]), y=np.zeros(1)), r"array 'X' is not finite in float32 at "
                                                        r"index \(0, 1\)"),
    (dict(X=np.array([[1.0], [1e39]]), y=np.zeros(2)), "overflows float32"),
    (dict(X=np.array([["a"]]), y=np.zeros(1)), "must hold real numbers"),
])
def test_npz_refusals(tmp_path, arrays, match):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        D.load_npz(tmp_path / "d.npz")


def test_npz_refuses_pickles(tmp_path):
    np.savez(tmp_path / "p.npz", X=np.zeros((2, 1)), y=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match="p.npz is not a readable .npz file: its array 'y'"):
        D.load_npz(tmp_path / "p.npz")
    with pytest.raises(TypeError, match="x must be the name of an array"):
        D.load_npz(tmp_path / "p.npz", x=0)
