"""``nnumba train`` reports every user error as one line, ``nnumba: error: ...``,
with exit status 2, and checks what it can before training (no traceback, no
lost run, no giant allocation). The runs are in-process with the numpy backend
and one epoch, so that nothing is compiled; two run the real command."""
import os
import subprocess
import sys

import numpy as np
import pytest

import nnumba as nn
import nnumba.cli as cli
from nnumba.cli import main

FAST = ["--backend", "numpy", "--epochs", "1", "--quiet"]


def one_line_error(capsys, argv, code=2):
    """Run main(argv); check the exit status and that stderr is one 'nnumba: error:' line."""
    status = main(argv)
    err = capsys.readouterr().err
    assert status == code, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("nnumba: error: "), err
    return lines[0]


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if data were loaded or a model trained."""
    def fail(*args, **kwargs):
        raise AssertionError("the check should have refused the run before this")

    monkeypatch.setattr(nn.Sequential, "fit", fail)
    monkeypatch.setattr(cli, "load_data", fail)


@pytest.fixture
def small_layers_only(monkeypatch):
    """Refuse any Dense layer wider than 1000: a bad label must be caught before allocation."""
    real = cli.Dense

    def dense(n_in, n_out, *args, **kwargs):
        assert n_out <= 1000, f"Dense(..., {n_out}) would have been allocated"
        return real(n_in, n_out, *args, **kwargs)

    monkeypatch.setattr(cli, "Dense", dense)


def classification_table(n=40, n_features=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_features)), rng.integers(0, n_classes, n).astype(float)


def write_csv(path, X, y, header=None, replace=None):
    """X and y as a CSV file; replace = {(row, column): text} overrides cells."""
    rows = [[f"{v:.6g}" for v in row] + [f"{t:g}"] for row, t in zip(X, y)]
    for (i, j), text in (replace or {}).items():
        rows[i][j] = text
    lines = ([",".join(header)] if header else []) + [",".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# ---- --data: files that cannot be read ---------------------------------------------------------

def test_missing_data_file(tmp_path, capsys):
    path = str(tmp_path / "missing.csv")
    line = one_line_error(capsys, ["train", "--data", path, *FAST])
    assert "--data" in line and path in line and "no such file" in line


def test_truncated_npz(tmp_path, capsys):
    X, y = classification_table()
    np.savez(tmp_path / "full.npz", X=X, y=y)
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    path = str(tmp_path / "cut.npz")
    line = one_line_error(capsys, ["train", "--data", path, *FAST])
    assert "--data" in line and path in line and "not a readable .npz file" in line


def test_directory_named_like_a_csv_file(tmp_path, capsys):
    (tmp_path / "x.csv").mkdir()
    path = str(tmp_path / "x.csv")
    line = one_line_error(capsys, ["train", "--data", path, *FAST])
    assert "--data" in line and path in line and "is a directory" in line


def test_npz_with_1d_X(tmp_path, capsys):
    np.savez(tmp_path / "flat.npz", X=np.arange(6.0), y=np.array([0, 1, 0, 1, 0, 1]))
    path = str(tmp_path / "flat.npz")
    line = one_line_error(capsys, ["train", "--data", path, *FAST])
    assert "--data" in line and path in line and "X must be a 2-D array" in line and "(6,)" in line


def test_data_that_is_neither_a_name_nor_a_file(capsys):
    line = one_line_error(capsys, ["train", "--data", "digit", *FAST])
    assert "--data" in line and "'digit'" in line and "digits" in line


# ---- --data: CSV files -------------------------------------------------------------------------

def test_csv_with_a_header_row_trains(tmp_path, capsys):
    X, y = classification_table()
    path = write_csv(tmp_path / "h.csv", X, y, header=["a", "b", "c", "label"])
    assert main(["train", "--data", path, "--test-size", "0.25", *FAST]) == 0
    out = capsys.readouterr().out
    assert "30 training and 10 test samples, 3 features" in out
    X2, y2 = nn.data.load_arrays(path)
    assert X2.shape == (40, 3) and np.allclose(X2, X, rtol=1e-5) and np.array_equal(y2, y)


def test_csv_first_row_with_numbers_and_text_is_not_a_header(tmp_path):
    X, y = classification_table()
    path = write_csv(tmp_path / "m.csv", X, y, replace={(0, 1): "oops"})
    with pytest.raises(ValueError, match=r"line 1, column 2: 'oops' is not a number"):
        nn.data.load_arrays(path)


def test_csv_with_a_text_cell(tmp_path, capsys):
    X, y = classification_table()
    path = write_csv(tmp_path / "t.csv", X, y, header=["a", "b", "c", "y"], replace={(4, 2): "abc"})
    line = one_line_error(capsys, ["train", "--data", path, *FAST])
    # the header is line 1, so data row 4 is line 6
    assert "--data" in line and path in line and "line 6, column 3" in line and "'abc'" in line


def test_csv_with_a_ragged_row(tmp_path, capsys):
    X, y = classification_table()
    path = write_csv(tmp_path / "r.csv", X, y)
    lines = (tmp_path / "r.csv").read_text().splitlines()
    lines[2] = ",".join(lines[2].split(",")[:-1])
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    line = one_line_error(capsys, ["train", "--data", path, *FAST])
    assert "--data" in line and path in line and "line 3: 3 values, but line 1 has 4" in line


# ---- --loss cross_entropy: labels checked before anything is allocated -------------------------

def test_mistyped_label_1e8_in_a_csv(tmp_path, capsys, small_layers_only):
    X, y = classification_table()
    path = write_csv(tmp_path / "typo.csv", X, y, header=["a", "b", "c", "y"], replace={(7, 3): "1e8"})
    line = one_line_error(capsys, ["train", "--data", path, *FAST])
    assert "--data" in line and path in line and "label 100000000 on line 9" in line
    assert "100000001 classes" in line and "100000" in line


def test_float_label_1e20_is_reported_as_it_is(tmp_path, capsys, small_layers_only):
    X, y = classification_table()
    y[5] = 1e20
    np.savez(tmp_path / "f.npz", X=X, y=y)
    line = one_line_error(capsys, ["train", "--data", str(tmp_path / "f.npz"), *FAST])
    assert "label 1e+20 at index 5 of y" in line and "-9223372036854775808" not in line


@pytest.mark.parametrize("label, problem", [(-1.0, "is negative"), (2.5, "is not an integer"),
                                            (np.nan, "is not a finite number"),
                                            (50.0, "implies 51 classes")])
def test_labels_that_are_not_class_numbers(tmp_path, capsys, small_layers_only, label, problem):
    X, y = classification_table()
    y[11] = label
    np.savez(tmp_path / "l.npz", X=X, y=y)
    line = one_line_error(capsys, ["train", "--data", str(tmp_path / "l.npz"), *FAST])
    assert f"label {label:g} at index 11 of y {problem}" in line and "cross_entropy" in line
    if label == 50:
        assert "more than the 40 samples in the data" in line


# ---- --save: checked before the data is loaded -------------------------------------------------

def test_save_into_a_missing_folder(tmp_path, capsys, no_training):
    path = str(tmp_path / "no" / "such" / "m.npz")
    line = one_line_error(capsys, ["train", "--save", path, *FAST])
    assert "--save" in line and path in line and str(tmp_path / "no" / "such") in line
    assert "does not exist" in line


def test_save_onto_a_directory(tmp_path, capsys, no_training):
    line = one_line_error(capsys, ["train", "--save", str(tmp_path), *FAST])
    assert "--save" in line and str(tmp_path) in line and "is a directory" in line


def test_save_under_a_file(tmp_path, capsys, no_training):
    (tmp_path / "f.txt").write_text("")
    line = one_line_error(capsys, ["train", "--save", str(tmp_path / "f.txt" / "m.npz"), *FAST])
    assert "--save" in line and "is not a folder" in line


def test_save_into_a_folder_that_is_not_writable(tmp_path, capsys, no_training, monkeypatch):
    # (os.access stands in for a read-only folder: the tests may run as root)
    real = os.access
    monkeypatch.setattr(cli.os, "access", lambda p, mode: False if os.fspath(p) == str(tmp_path)
                        else real(p, mode))
    line = one_line_error(capsys, ["train", "--save", str(tmp_path / "m.npz"), *FAST])
    assert "--save" in line and str(tmp_path) in line and "not writable" in line


def test_save_check_creates_nothing(tmp_path):
    cli.check_save_path(str(tmp_path / "m.npz"))
    assert os.listdir(tmp_path) == []


# ---- numbers on the command line ---------------------------------------------------------------

@pytest.mark.parametrize("option, value, expected", [
    ("--epochs", "-1", "argument --epochs: must be an integer >= 0, got -1"),
    ("--batch-size", "-3", "argument --batch-size: must be an integer >= 0, got -3"),
    ("--test-size", "1.5", "argument --test-size: must be in (0, 1), got 1.5"),
    ("--hidden", "0", "argument --hidden: must be an integer >= 1, got 0"),
    ("--lr", "-1", "argument --lr: must be > 0, got -1"),
    ("--lr", "nan", "argument --lr: must be a finite number, got 'nan'"),
    ("--beta2", "1", "argument --beta2: must be in [0, 1), got 1"),
    ("--seed", "x", "argument --seed: expected an integer, got 'x'"),
])
def test_numbers_out_of_range(capsys, no_training, option, value, expected):
    argv = ["train", *FAST, option, value]
    assert one_line_error(capsys, argv) == f"nnumba: error: {expected}"


def test_help_shows_every_default(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    for action in train._actions:
        if action.dest == "help":
            continue
        assert action.help, action.option_strings
        if action.default is None:
            assert "(default: " in action.help, action.option_strings
        else:
            assert f"(default: {action.default})" in text, action.option_strings
    assert main(["--help"]) == 0


# ---- runs that fail ----------------------------------------------------------------------------

def test_diverged_run_is_one_line_with_status_1(capsys, monkeypatch):
    def diverge(self, *args, **kwargs):
        raise nn.NonFiniteError("training diverged at epoch 1, iteration 2 of 45: the batch loss is "
                                "nan", epoch=1, iteration=2, loss=float("nan"))

    monkeypatch.setattr(nn.Sequential, "fit", diverge)
    line = one_line_error(capsys, ["train", *FAST], code=1)
    assert "training diverged at epoch 1, iteration 2 of 45" in line


def test_interrupt_is_one_line_with_status_130(capsys, monkeypatch):
    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nn.Sequential, "fit", interrupt)
    try:
        status = main(["train", *FAST])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main")
    assert status == 130 and capsys.readouterr().err == "nnumba: interrupted\n"


@pytest.mark.parametrize("argv", [["--data", "missing.npz"], ["--epochs", "-1"]])
def test_the_real_command_exits_2_without_traceback(tmp_path, argv):
    done = subprocess.run([sys.executable, "-m", "nnumba.cli", "train", *FAST, *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("nnumba: error: ") and argv[0] in done.stderr
