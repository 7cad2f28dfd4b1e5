"""The command line reports every user error as one line, ``nnumba: error: ...``,
with exit status 2, and checks what it can before training (no traceback, no
lost run, no giant allocation). The runs are in-process with the numpy backend
and one epoch, so that nothing is compiled; two run the real command. (The
workflow itself, data sets, --model, schedules, resume, evaluate and predict, is
tests/test_cli_workflow.py.)"""
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
    monkeypatch.setattr(cli.commands, "load_data", fail)


@pytest.fixture
def small_layers_only(monkeypatch):
    """Refuse any Dense layer wider than 1000: a bad label must be caught before allocation."""
    real = cli.model_spec.Dense

    def dense(n_in, n_out, *args, **kwargs):
        assert n_out <= 1000, f"Dense(..., {n_out}) would have been allocated"
        return real(n_in, n_out, *args, **kwargs)

    monkeypatch.setattr(cli.model_spec, "Dense", dense)


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
    assert "--data" in line and path in line and "array 'X' must be at least 2-D" in line
    assert "(6,)" in line and "reshape(-1, 1)" in line


def test_data_that_is_neither_a_name_nor_a_file(capsys):
    line = one_line_error(capsys, ["train", "--data", "digit", *FAST])
    assert "--data" in line and "'digit'" in line and "did you mean 'digits'?" in line
    line = one_line_error(capsys, ["train", "--dataset", "cifar10", *FAST])
    assert "--dataset cifar10: give the folder" in line and "cifar10:" in line
    line = one_line_error(capsys, ["train", "--dataset", "mnist1d:15", *FAST])
    assert "mnist1d:15" in line and "multiple of 10" in line


# ---- --data: CSV files -------------------------------------------------------------------------

def test_csv_with_a_header_row_trains(tmp_path, capsys):
    X, y = classification_table()
    path = write_csv(tmp_path / "h.csv", X, y, header=["a", "b", "c", "label"])
    assert main(["train", "--data", path, "--test-size", "0.25", *FAST]) == 0
    out = capsys.readouterr().out
    # 10 test samples; of the other 30, ceil(0.1 * 30) = 3 for validation (--val-split 0.1)
    assert "27 training, 3 validation and 10 test samples, 3 features" in out
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
    # (1e20 is not an exact integer, so --loss auto would take y for regression targets)
    X, y = classification_table()
    y[5] = 1e20
    np.savez(tmp_path / "f.npz", X=X, y=y)
    line = one_line_error(capsys, ["train", "--data", str(tmp_path / "f.npz"), "--loss",
                                   "cross_entropy", *FAST])
    assert "label 1e+20 at index 5 of y" in line and "-9223372036854775808" not in line


@pytest.mark.parametrize("label, problem", [(-1.0, "is negative"), (2.5, "is not an integer"),
                                            (50.0, "implies 51 classes")])
def test_labels_that_are_not_class_numbers(tmp_path, capsys, small_layers_only, label, problem):
    X, y = classification_table()
    y[11] = label
    np.savez(tmp_path / "l.npz", X=X, y=y)
    line = one_line_error(capsys, ["train", "--data", str(tmp_path / "l.npz"), "--loss",
                                   "cross_entropy", *FAST])
    assert f"label {label:g} at index 11 of y {problem}" in line and "cross_entropy" in line
    if label == 50:
        assert "more than the 40 samples in the data" in line
    if label != 2.5:  # integers, so --loss auto takes them for class labels too
        line = one_line_error(capsys, ["train", "--data", str(tmp_path / "l.npz"), *FAST])
        assert f"label {label:g} at index 11 of y {problem}" in line


def test_a_nan_label_is_refused_where_it_is(tmp_path, capsys, small_layers_only):
    X, y = classification_table()
    y[11] = np.nan
    np.savez(tmp_path / "l.npz", X=X, y=y)
    line = one_line_error(capsys, ["train", "--data", str(tmp_path / "l.npz"), *FAST])
    assert "array 'y' is not finite" in line and "(11,)" in line and "nan" in line


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
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(tmp_path)
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


def _command_parsers():
    return cli.build_parser()._subparsers._group_actions[0].choices


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_help_shows_every_default(capsys, command):
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    actions = [a for a in _command_parsers()[command]._actions
               if a.dest != "help" and a.option_strings and not a.required]
    assert len(actions) >= 3
    for action in actions:
        assert action.help, action.option_strings
        if action.default is None:
            assert "(default: " in action.help, action.option_strings
        else:
            assert f"(default: {action.default})" in text, action.option_strings
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out


def test_train_help_documents_the_model_and_schedule_syntax(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for piece in ("dense:UNITS", "conv1d:CHANNELS:KERNEL[:STRIDE[:PADDING]]", "maxpool:SIZE[:STRIDE]",
                  "globalavgpool", "dropout:RATE", "leaky_relu[:ALPHA]", "cosine[:ETA_MIN]",
                  "step:EPOCHS[:GAMMA]", "onecycle[:PCT]", "warmup:STEPS[,SCHEDULE]",
                  "e.g. warmup:100,cosine", "--data SPEC", "--no-standardize"):
        assert piece in out, piece


# ---- the other output files: checked before the data are loaded --------------------------------

@pytest.mark.parametrize("option", ["--checkpoint", "--history", "--plot"])
def test_output_files_into_a_missing_folder(tmp_path, capsys, no_training, option):
    path = str(tmp_path / "no" / ("f.png" if option == "--plot" else "f.npz"))
    line = one_line_error(capsys, ["train", option, path, *FAST])
    assert line.startswith(f"nnumba: error: {option} {path}:") and "does not exist" in line


def test_two_outputs_on_one_path(tmp_path, capsys, no_training):
    path = str(tmp_path / "m.npz")
    line = one_line_error(capsys, ["train", "--save", path, "--checkpoint", path, *FAST])
    assert f"--checkpoint {path}: is also the --save file" in line


def test_checkpoint_with_format_fields(tmp_path, capsys, no_training):
    line = one_line_error(capsys, ["train", "--checkpoint", str(tmp_path / "ck-{epoch}.npz"), *FAST])
    assert "--checkpoint" in line and "without format fields" in line


def test_plot_without_matplotlib_names_the_extra(tmp_path, capsys, no_training, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    line = one_line_error(capsys, ["train", "--plot", str(tmp_path / "p.png"), *FAST])
    assert "--plot" in line and "matplotlib" in line and 'pip install "nnumba[plot]"' in line


def test_plot_in_an_unknown_format(tmp_path, capsys, no_training):
    pytest.importorskip("matplotlib")
    line = one_line_error(capsys, ["train", "--plot", str(tmp_path / "p.xyz"), *FAST])
    assert "--plot" in line and ".png" in line
    line = one_line_error(capsys, ["train", "--plot", str(tmp_path / "p.png"), "--epochs", "0",
                                   "--backend", "numpy"])
    assert "--epochs 0 trains nothing to plot" in line


def test_evaluate_a_file_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "x.npz").write_bytes(b"not a model")
    line = one_line_error(capsys, ["evaluate", str(tmp_path / "x.npz"), "--backend", "numpy"])
    assert "evaluate" in line and str(tmp_path / "x.npz") in line and "nnumba model file" in line
    line = one_line_error(capsys, ["predict", str(tmp_path / "x.npz"), "--backend", "numpy"],)
    assert "the following arguments are required: --data" in line


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
