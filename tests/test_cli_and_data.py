"""The command line and the data helpers (local files written by the tests)."""
import numpy as np
import pytest

import nnumba as nn
from nnumba.cli import main


def test_cli_trains_on_digits(capsys):
    # the README's command, `nnumba train` with no arguments (the cpu backend, 30 epochs): of
    # the 1437 training digits 144 (--val-split 0.1) are held out for validation, so the
    # 1293 left make ceil(1293 / 32) = 41 iterations per epoch; the 360 test digits are
    # used for the final report only
    assert main(["train", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1293 training, 144 validation and 360 test samples, 64 features" in out
    assert "41 iterations per epoch" in out and "1230 weight updates" in out
    assert "backend 'cpu'" in out
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert accuracy >= 0.95


def test_cli_on_a_local_csv_with_options(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",")
    code = main(["train", "--data", str(tmp_path / "d.csv"), "--loss", "binary_cross_entropy",
                 "--optimizer", "rmsprop", "--eps-outside-sqrt", "--hidden", "8", "4",
                 "--activation", "tanh", "--batch-size", "0", "--epochs", "3", "--backend", "numpy",
                 "--dtype", "float64", "--quiet", "--save", str(tmp_path / "m.npz")])
    out = capsys.readouterr().out
    assert code == 0 and "1 iterations per epoch" in out and "3 weight updates" in out
    model = nn.load(tmp_path / "m.npz")
    assert model.optimizer.eps_inside_sqrt is False and model.dtype == np.float64


def test_cli_reports_errors(capsys):
    # user errors: one line, exit status 2 (argparse's); more in test_cli_errors.py
    assert main(["train", "--optimizer", "sgd", "--beta1", "0.5", "--quiet"]) == 2
    assert "--beta1 does not apply to sgd" in capsys.readouterr().err
    assert main(["train", "--lr", "-1", "--quiet", "--epochs", "1"]) == 2
    assert "argument --lr: must be > 0, got -1" in capsys.readouterr().err


def test_load_arrays(tmp_path):
    X, y = np.arange(12.0).reshape(4, 3), np.array([0, 1, 0, 1])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    X2, y2 = nn.data.load_arrays(tmp_path / "d.npz")
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",")
    X3, y3 = nn.data.load_arrays(tmp_path / "d.csv")
    np.testing.assert_array_equal(X3, X)
    np.testing.assert_array_equal(y3, y)


def test_load_arrays_refuses_bad_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="'X' and 'y'"):
        nn.data.load_arrays(tmp_path / "other.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        nn.data.load_arrays(tmp_path / "bad.npz")
    (tmp_path / "bad.csv").write_text("1,2\n3,b\n")  # "a,b" first would be a header row
    with pytest.raises(ValueError, match="line 2, column 2: 'b' is not a number"):
        nn.data.load_arrays(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=".npz or .csv"):
        nn.data.load_arrays(tmp_path / "data.txt")


def test_data_sets_need_no_download():
    X_train, y_train, X_test, y_test = nn.data.load_digits()
    assert X_train.shape == (1437, 64) and X_test.shape == (360, 64)
    assert 0 <= X_train.min() and X_train.max() <= 1 and set(np.unique(y_train)) == set(range(10))
    X_train, y_train, X_test, y_test = nn.data.load_breast_cancer()
    assert X_train.shape[1] == 30 and abs(X_train.mean()) < 1e-10


@pytest.mark.parametrize("bad", [dict(n_samples=-1, batch_size=2), dict(n_samples=5, batch_size=0)])
def test_counting_refuses_bad_sizes(bad):
    with pytest.raises(ValueError):
        nn.data.iterations_per_epoch(**bad)
