"""Callbacks (Keras semantics): the hooks driven directly with scripted logs and a fake
model, and in real fits on the numpy backend with a slice of the digits data."""
import csv
import json
import math
import os
import types
import warnings

import numpy as np
import pytest

import nnumba as nn
from nnumba.callbacks import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler,
                              ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN)
from nnumba.schedules import StepLR


# ---- helpers -------------------------------------------------------------------------------------
class FakeModel:
    """What the callbacks use of a model: stop_training, get/set_weights, optimizer.lr, dtype."""

    def __init__(self, lr=0.1, dtype="float64"):
        self.stop_training = False
        self.optimizer = types.SimpleNamespace(lr=lr)
        self.dtype = np.dtype(dtype)
        self.weights = [np.zeros(3)]
        self.epochs_trained = 0

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]


def drive(callback, values, monitor="val_loss", model=None, begin=True, end=True):
    """Feed on_epoch_end one scripted value per epoch until the callback stops training;
    the fake model's weights are [epoch] during epoch ``epoch``. Returns the model and the
    epochs run."""
    model = model or FakeModel()
    callback.set_model(model)
    if begin:
        callback.on_train_begin({})
    run = 0
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch, {})
        model.weights = [np.full(3, float(epoch))]
        model.epochs_trained += 1
        callback.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
        run = epoch + 1
        if model.stop_training:
            break
    if end:
        callback.on_train_end({})
    return model, run


@pytest.fixture(scope="module")
def digits():
    X, y, Xt, yt = nn.data.load_digits()
    return X[:240], y[:240], Xt[:120], yt[:120]


def make_model(lr=0.05, seed=0, optimizer=None):
    model = nn.Sequential([nn.Dense(64, 16), nn.ReLU(), nn.Dense(16, 10)], backend="numpy",
                          dtype="float64", seed=seed)
    model.compile("cross_entropy", optimizer or nn.optim.Adam(lr=lr))
    return model


class Recorder(Callback):
    """Each epoch's weights at its end, and the learning rate at its beginning."""

    def __init__(self):
        self.weights, self.lr, self.logs = [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.lr.append(self.model.optimizer.lr)

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())
        self.logs.append(dict(logs))


def same_weights(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# ---- Callback ------------------------------------------------------------------------------------
def test_base_callback_hooks_are_no_ops_and_set_model_keeps_the_model(digits):
    X, y, Xv, yv = digits

    class Counter(Callback):
        calls = []

        def on_epoch_end(self, epoch, logs=None):
            self.calls.append((epoch, self.model.epochs_trained))

    cb, model = Counter(), make_model()
    for hook in (cb.on_train_begin, cb.on_train_end):
        assert hook({}) is None
    assert cb.on_epoch_begin(0, {}) is None
    model.fit(X, y, epochs=2, callbacks=[cb])
    assert cb.model is model and cb.calls == [(0, 1), (1, 2)]


# ---- EarlyStopping -------------------------------------------------------------------------------
def test_early_stopping_scripted_patience():
    es = EarlyStopping(patience=2)
    #        0    1    2     3     4
    model, run = drive(es, [1.0, 0.8, 0.9, 0.85, 0.7])
    assert (run, es.stopped_epoch, es.best, es.best_epoch) == (4, 3, 0.8, 1)
    assert model.stop_training
    es = EarlyStopping(patience=0)
    _, run = drive(es, [1.0, 0.9, 0.95, 0.5])
    assert (run, es.stopped_epoch) == (3, 2)
    # never stops while it improves; stopped_epoch stays 0
    es = EarlyStopping(patience=1)
    model, run = drive(es, [5.0, 4.0, 3.0, 2.0])
    assert (run, es.stopped_epoch, model.stop_training, es.best) == (4, 0, False, 2.0)


def test_early_stopping_min_delta_mode_baseline_start_from_epoch():
    # min_delta: 0.95 is not better than 1.0 by more than 0.1
    es = EarlyStopping(monitor="loss", patience=1, min_delta=0.1)
    _, run = drive(es, [1.0, 0.95, 0.5], monitor="loss")
    assert (run, es.stopped_epoch, es.best) == (2, 1, 1.0)
    # "auto" maximises accuracy; "min" forces minimising
    es = EarlyStopping(monitor="val_accuracy", patience=1)
    assert es.mode == "max"
    _, run = drive(es, [0.5, 0.6, 0.55, 0.9], monitor="val_accuracy")
    assert (run, es.stopped_epoch, es.best) == (3, 2, 0.6)
    for name, mode in [("val_auc", "max"), ("r2", "max"), ("val_loss", "min"), ("mse", "min")]:
        assert EarlyStopping(monitor=name).mode == mode
    assert EarlyStopping(monitor="val_accuracy", mode="min").mode == "min"
    # baseline: improvements that do not beat it do not reset the wait
    es = EarlyStopping(patience=2, baseline=0.5)
    _, run = drive(es, [0.9, 0.95, 0.96])
    assert (run, es.stopped_epoch, es.best) == (2, 1, 0.9)
    es = EarlyStopping(patience=2)
    _, run = drive(es, [0.9, 0.95, 0.96])
    assert (run, es.stopped_epoch) == (3, 2)
    # start_from_epoch: the first epochs are not watched
    es = EarlyStopping(patience=1, start_from_epoch=2)
    _, run = drive(es, [0.1, 0.2, 0.9, 0.8, 0.85])
    assert (run, es.stopped_epoch, es.best, es.best_epoch) == (5, 4, 0.8, 3)


def test_early_stopping_restores_the_best_weights_also_without_stopping():
    es = EarlyStopping(patience=2, restore_best_weights=True)
    model, run = drive(es, [1.0, 0.8, 0.9, 0.85, 0.7])
    assert run == 4 and np.array_equal(model.weights[0], np.full(3, 1.0))  # epoch 1's
    # Keras 3: restored at the end of training even when it did not stop early
    es = EarlyStopping(patience=5, restore_best_weights=True)
    model, run = drive(es, [1.0, 0.3, 0.9, 0.85])
    assert run == 4 and es.stopped_epoch == 0 and np.array_equal(model.weights[0], np.full(3, 1.0))
    # nothing restored without the option
    es = EarlyStopping(patience=2)
    model, _ = drive(es, [1.0, 0.8, 0.9, 0.85])
    assert np.array_equal(model.weights[0], np.full(3, 3.0))


def test_early_stopping_reset_by_train_begin_and_missing_monitor_warns():
    es = EarlyStopping(patience=1)
    drive(es, [1.0, 2.0, 3.0])
    assert es.stopped_epoch == 1
    _, run = drive(es, [5.0, 4.0, 3.0])  # a second fit starts afresh (best was 1.0)
    assert (run, es.stopped_epoch, es.best) == (3, 0, 3.0)
    es = EarlyStopping(monitor="val_loss", patience=0)
    model = FakeModel()
    es.set_model(model)
    es.on_train_begin({})
    for epoch in range(3):
        with pytest.warns(UserWarning,
                          match=r"'val_loss', which is not in the logs.*'loss', 'accuracy'"):
            es.on_epoch_end(epoch, {"loss": 1.0 + epoch, "accuracy": 0.5})
    assert not model.stop_training and es.best == math.inf


@pytest.mark.parametrize("kwargs, error, match", [
    ({"patience": -1}, ValueError, "patience must be >= 0"),
    ({"patience": 1.5}, TypeError, "patience must be an integer"),
    ({"min_delta": -0.1}, ValueError, "min_delta must be in"),
    ({"mode": "bigger"}, ValueError, "mode must be 'auto', 'min' or 'max'"),
    ({"monitor": ""}, TypeError, "monitor must be a non-empty string"),
    ({"monitor": 3}, TypeError, "monitor must be a non-empty string"),
    ({"restore_best_weights": "yes"}, TypeError, "restore_best_weights must be True or False"),
    ({"baseline": float("nan")}, ValueError, "baseline must be finite"),
    ({"start_from_epoch": -2}, ValueError, "start_from_epoch must be >= 0"),
])
def test_early_stopping_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping(**kwargs)


def test_early_stopping_in_a_real_fit(digits):
    """The same seed gives the same bits: a run without the callback shows the validation
    loss, from which the stopping epoch follows; the run with it stops there and ends
    with the best epoch's weights exactly."""
    X, y, Xv, yv = digits
    free, rec_free = make_model(), Recorder()
    val = free.fit(X, y, epochs=15, batch_size=32, validation_data=(Xv, yv),
                   callbacks=[rec_free])["val_loss"]
    patience, best, expected_stop = 2, 0, None
    for e in range(1, len(val)):
        if val[e] < val[best]:
            best = e
        elif e - best >= patience:
            expected_stop = e
            break
    assert expected_stop is not None and best > 0, f"the data must overfit: val_loss {val}"

    model, rec = make_model(), Recorder()
    es = EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    history = model.fit(X, y, epochs=15, batch_size=32, validation_data=(Xv, yv),
                        callbacks=[rec, es])
    assert es.stopped_epoch == expected_stop and es.best_epoch == best
    assert es.best == val[best]
    assert model.epochs_trained == expected_stop + 1 == history.epochs == len(history["val_loss"])
    assert history["val_loss"] == val[:expected_stop + 1]
    assert same_weights(model.get_weights(), rec.weights[best])
    assert same_weights(rec.weights[best], rec_free.weights[best])
    assert not same_weights(model.get_weights(), rec.weights[-1])


# ---- ModelCheckpoint -----------------------------------------------------------------------------
def checkpoint_run(cb, model, values, first_weight=0.0):
    """on_epoch_end with scripted val_loss values; the model's weights are set to a value
    per epoch so the file saved says which epoch it holds. Returns the file's bytes after
    each epoch (None while it does not exist)."""
    cb.set_model(model)
    cb.on_train_begin({})
    contents = []
    shapes = [w.shape for w in model.get_weights()]
    for epoch, value in enumerate(values):
        model.set_weights([np.full(s, first_weight + epoch) for s in shapes])
        model.epochs_trained += 1
        cb.on_epoch_end(epoch, {"loss": 1.0, "val_loss": value})
        contents.append(open(cb.path, "rb").read() if os.path.exists(cb.path) else None)
    cb.on_train_end({})
    return contents


def saved_epoch_marker(path):
    return float(nn.load(path).get_weights()[0].flat[0])


def test_model_checkpoint_save_best_only_writes_only_on_improvement(tmp_path):
    path = str(tmp_path / "best.npz")
    cb = ModelCheckpoint(path, save_best_only=True)
    contents = checkpoint_run(cb, make_model(), [1.0, 0.8, 0.9, 0.7, 0.75, float("nan")])
    changed = [i for i in range(len(contents))
               if contents[i] is not None and (i == 0 or contents[i] != contents[i - 1])]
    assert changed == [0, 1, 3]
    assert saved_epoch_marker(path) == 3.0 and (cb.best, cb.best_epoch) == (0.7, 3)
    sidecar = json.loads(open(path + ".json").read())
    assert sidecar["best"] == 0.7 and sidecar["epoch"] == 3 and sidecar["path"] == path
    assert sidecar["monitor"] == "val_loss" and sidecar["mode"] == "min"
    assert sorted(os.listdir(tmp_path)) == ["best.npz", "best.npz.json"]  # no temporaries left

    # a second run, a new callback on the same path: it continues from the recorded best
    again = ModelCheckpoint(path, save_best_only=True)
    contents = checkpoint_run(again, make_model(seed=1), [0.9, 0.75, 0.71], first_weight=100.0)
    assert again.best == 0.7 and all(c == contents[0] for c in contents)
    assert saved_epoch_marker(path) == 3.0  # the better checkpoint was not overwritten
    checkpoint_run(again, make_model(seed=1), [0.9, 0.6], first_weight=100.0)
    assert saved_epoch_marker(path) == 101.0 and json.load(open(path + ".json"))["best"] == 0.6


def test_model_checkpoint_max_mode_and_every_epoch(tmp_path):
    cb = ModelCheckpoint(str(tmp_path / "acc.npz"), monitor="val_accuracy", save_best_only=True)
    assert cb.mode == "max"
    model = make_model()
    cb.set_model(model)
    cb.on_train_begin({})
    for epoch, acc in enumerate([0.5, 0.7, 0.6]):
        model.set_weights([np.full(w.shape, float(epoch)) for w in model.get_weights()])
        cb.on_epoch_end(epoch, {"val_accuracy": acc})
    assert saved_epoch_marker(cb.path) == 1.0 and cb.best == 0.7
    # save_best_only=False: every epoch, no sidecar
    cb = ModelCheckpoint(str(tmp_path / "last.npz"))
    contents = checkpoint_run(cb, make_model(), [1.0, 2.0, 3.0])
    assert len(set(contents)) == 3 and saved_epoch_marker(cb.path) == 2.0
    assert not os.path.exists(cb.path + ".json")


def test_model_checkpoint_formatted_paths_in_a_real_fit(digits, tmp_path):
    X, y, Xv, yv = digits
    template = str(tmp_path / "ckpt" / "e{epoch:02d}-{val_loss:.3f}.npz")  # the folder is created
    model = make_model()
    history = model.fit(X, y, epochs=3, batch_size=32, validation_data=(Xv, yv),
                        callbacks=[ModelCheckpoint(template)])
    expected = [f"e{e + 1:02d}-{v:.3f}.npz" for e, v in enumerate(history["val_loss"])]
    assert sorted(os.listdir(tmp_path / "ckpt")) == sorted(expected)
    for e, name in enumerate(expected):
        loaded = nn.load(str(tmp_path / "ckpt" / name))
        assert loaded.epochs_trained == e + 1
    assert same_weights(loaded.get_weights(), model.get_weights())


def test_model_checkpoint_second_run_keeps_the_better_checkpoint_in_real_fits(digits, tmp_path):
    X, y, Xv, yv = digits
    path = str(tmp_path / "best-{epoch}.npz")
    first = ModelCheckpoint(path, save_best_only=True)
    make_model().fit(X, y, epochs=6, batch_size=32, validation_data=(Xv, yv), callbacks=[first])
    files = sorted(os.listdir(tmp_path))
    best_file = first.last_saved
    before = open(best_file, "rb").read()
    # a fresh model trained for one epoch with a tiny learning rate is far worse
    second = ModelCheckpoint(path, save_best_only=True)
    history = make_model(lr=1e-5, seed=3).fit(X, y, epochs=2, batch_size=32,
                                              validation_data=(Xv, yv), callbacks=[second])
    assert min(history["val_loss"]) > first.best
    assert sorted(os.listdir(tmp_path)) == files and open(best_file, "rb").read() == before
    assert second.best == first.best and second.last_saved is None
    assert os.path.exists(tmp_path / "best-{epoch}.npz.json")  # the sidecar of the template


def test_model_checkpoint_sidecar_problems(tmp_path):
    path = str(tmp_path / "m.npz")
    checkpoint_run(ModelCheckpoint(path, save_best_only=True), make_model(), [1.0, 0.5])
    # another monitor: the record is not comparable, ignored with a warning
    other = ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True)
    other.set_model(make_model())
    with pytest.warns(UserWarning, match="records the best 'val_loss'.*ignoring it"):
        other.on_train_begin({})
    assert other.best is None
    # the checkpoint it names is gone: ignored with a warning
    os.rename(path, path + ".moved")
    cb = ModelCheckpoint(path, save_best_only=True)
    cb.set_model(make_model())
    with pytest.warns(UserWarning, match="no longer exists"):
        cb.on_train_begin({})
    assert cb.best is None
    os.rename(path + ".moved", path)
    # damaged
    for text in ["{not json", json.dumps({"format": "other"}),
                 json.dumps({"format": "nnumba.ModelCheckpoint", "best": "x", "path": path,
                             "epoch": 1})]:
        with open(path + ".json", "w") as f:
            f.write(text)
        with pytest.raises(ValueError, match="is damaged.*delete it"):
            ModelCheckpoint(path, save_best_only=True).on_train_begin({})


def test_model_checkpoint_missing_monitor_and_fields(tmp_path):
    cb = ModelCheckpoint(str(tmp_path / "m.npz"), save_best_only=True)
    cb.set_model(make_model())
    cb.on_train_begin({})
    with pytest.warns(UserWarning, match=r"'val_loss', which is not in the logs.*'loss'"):
        cb.on_epoch_end(0, {"loss": 0.3})
    assert not os.path.exists(cb.path)
    cb = ModelCheckpoint(str(tmp_path / "{val_acc:.2f}.npz"))
    cb.set_model(make_model())
    with pytest.raises(KeyError, match=r"names the field 'val_acc'.*available are epoch, loss"):
        cb.on_epoch_end(0, {"loss": 0.3})


@pytest.mark.parametrize("args, kwargs, error, match", [
    (("a{.npz",), {}, ValueError, "not a valid format string"),
    (("a.npz",), {"save_freq": 5}, ValueError, "save_freq must be 'epoch'"),
    ((b"a.npz",), {}, TypeError, "path must be a str"),
    (("",), {}, ValueError, "path must not be empty"),
    (("a.npz",), {"mode": "up"}, ValueError, "mode must be"),
    (("a.npz",), {"save_best_only": 1}, TypeError, "save_best_only must be True or False"),
])
def test_model_checkpoint_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        ModelCheckpoint(*args, **kwargs)


# ---- CSVLogger -----------------------------------------------------------------------------------
def read_csv(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_csv_logger_in_a_real_fit(digits, tmp_path):
    X, y, Xv, yv = digits
    path = str(tmp_path / "log.csv")
    seen = []

    class ReadsTheFile(Callback):  # runs after CSVLogger: the epoch's row is already on disk
        def on_epoch_end(self, epoch, logs=None):
            seen.append(len(read_csv(path)))

    model = make_model()
    history = model.fit(X, y, epochs=3, batch_size=32, validation_data=(Xv, yv),
                        callbacks=[CSVLogger(path), ReadsTheFile()])
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"] and seen == [2, 3, 4]
    for key in rows[0][1:]:  # floats round-trip exactly
        assert [float(r[rows[0].index(key)]) for r in rows[1:]] == history[key]
    # append=True continues the file under its header; append=False starts it again
    model.fit(X, y, epochs=2, callbacks=[CSVLogger(path, append=True)])
    rows = read_csv(path)
    assert len(rows) == 6 and rows[4][0] == "0" and rows[5][3:] == ["NA", "NA"]
    assert rows.count(rows[0]) == 1
    model.fit(X, y, epochs=1, callbacks=[CSVLogger(path)])
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss", "accuracy"] and len(rows) == 2


def test_csv_logger_separator_and_values(tmp_path):
    path = str(tmp_path / "log.tsv")
    logger = CSVLogger(path, separator="\t")
    logger.set_model(FakeModel())
    logger.on_train_begin({})
    logger.on_epoch_end(0, {"loss": np.float64(0.1), "count": 3, "val_loss": float("nan")})
    logger.on_epoch_end(1, {"loss": float("inf"), "extra": 1.0})
    logger.on_train_end({})
    assert open(path).read().splitlines() == ["epoch\tloss\tcount\tval_loss", "0\t0.1\t3\tnan",
                                              "1\tinf\tNA\tNA"]
    with open(path, "w") as f:
        f.write("time,loss\n1,2\n")
    with pytest.raises(ValueError, match="not a CSVLogger header"):
        CSVLogger(path, append=True).on_train_begin({})
    for bad in ["", ";;", "\n", 1]:
        with pytest.raises(ValueError, match="separator must be one character"):
            CSVLogger(path, separator=bad)
    with pytest.raises(TypeError, match="append must be True or False"):
        CSVLogger(path, append="yes")


# ---- ReduceLROnPlateau ---------------------------------------------------------------------------
def lr_after_each_epoch(cb, values, lr=0.1):
    model = FakeModel(lr=lr)
    cb.set_model(model)
    cb.on_train_begin({})
    out, logged = [], []
    for epoch, value in enumerate(values):
        logs = {"val_loss": value}
        cb.on_epoch_end(epoch, logs)
        out.append(model.optimizer.lr)
        logged.append(logs["learning_rate"])
    return out, logged


def test_reduce_lr_on_plateau_patience_cooldown_min_lr():
    flat = [1.0] * 10
    lrs, logged = lr_after_each_epoch(ReduceLROnPlateau(factor=0.5, patience=2), flat)
    # epoch 0 sets best; the wait reaches 2 at epochs 2, 4, 6, 8
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.00625, 0.00625]
    assert logged == [0.1] + lrs[:-1]  # the rate each epoch trained with
    lrs, _ = lr_after_each_epoch(ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2), flat)
    # cooldown 2: after a reduction the next two epochs do not count
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125, 0.0125]
    lrs, _ = lr_after_each_epoch(ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.02), flat)
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02, 0.02]
    # an improvement by more than min_delta resets the wait
    lrs, _ = lr_after_each_epoch(ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.1),
                                 [1.0, 0.95, 0.8, 0.75, 0.6, 0.59, 0.58])
    assert lrs == [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05]
    # mode max
    lrs, _ = lr_after_each_epoch(ReduceLROnPlateau("val_loss", mode="max", factor=0.5, patience=1),
                                 [1.0, 2.0, 1.5])
    assert lrs == [0.1, 0.1, 0.05]


def test_reduce_lr_on_plateau_in_a_real_fit(digits):
    """Validation labels shifted by one: the better the model learns, the worse val_loss."""
    X, y, Xv, yv = digits
    model, rec = make_model(lr=0.02), Recorder()
    history = model.fit(X, y, epochs=4, batch_size=32, validation_data=(Xv, (yv + 1) % 10),
                        callbacks=[ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0), rec])
    val = history["val_loss"]
    assert all(b > a for a, b in zip(val, val[1:])), val
    assert rec.lr == [0.02, 0.02, 0.01, 0.005] and model.optimizer.lr == 0.0025
    assert [logs["learning_rate"] for logs in rec.logs] == [0.02, 0.02, 0.01, 0.005]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"factor": 1.0}, ValueError, "factor must be in"),
    ({"factor": 0.0}, ValueError, "factor must be in"),
    ({"patience": -1}, ValueError, "patience must be >= 0"),
    ({"cooldown": -1}, ValueError, "cooldown must be >= 0"),
    ({"min_lr": -1e-3}, ValueError, "min_lr must be in"),
    ({"min_delta": -1.0}, ValueError, "min_delta must be in"),
    ({"mode": "?"}, ValueError, "mode must be"),
])
def test_reduce_lr_on_plateau_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ReduceLROnPlateau(**kwargs)


# ---- LearningRateScheduler -----------------------------------------------------------------------
def test_learning_rate_scheduler_sets_the_rate_each_epoch_and_it_is_used(digits):
    X, y, _, _ = digits
    model, rec = make_model(lr=0.04), Recorder()
    sched = LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr / 2)
    history = model.fit(X, y, epochs=3, batch_size=32, callbacks=[sched, rec])
    assert rec.lr == [0.04, 0.02, 0.01] and model.optimizer.lr == 0.01
    assert [logs["learning_rate"] for logs in rec.logs] == [0.04, 0.02, 0.01]
    # the rates were the ones trained with: the same as three fits with the rate set by hand
    manual = make_model(lr=0.04)
    losses = []
    for lr in (0.04, 0.02, 0.01):
        manual.optimizer.lr = lr
        losses += manual.fit(X, y, epochs=1, batch_size=32)["loss"]
    assert losses == history["loss"] and same_weights(manual.get_weights(), model.get_weights())
    # and not the same as a constant rate
    constant = make_model(lr=0.04)
    constant.fit(X, y, epochs=3, batch_size=32)
    assert not same_weights(constant.get_weights(), model.get_weights())


def test_learning_rate_scheduler_forms():
    model = FakeModel(lr=0.3)
    one_arg = LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    step = LearningRateScheduler(StepLR(0.1, step_size=2, gamma=0.5))  # epoch e: schedule(e + 1)
    for cb, expected in ((one_arg, [0.1, 0.05, 0.1 / 3]), (step, [0.1, 0.1, 0.05, 0.05, 0.025])):
        cb.set_model(model)
        got = []
        for epoch in range(len(expected)):
            cb.on_epoch_begin(epoch, {})
            got.append(model.optimizer.lr)
        assert got == expected


@pytest.mark.parametrize("fn, error, match", [
    (lambda epoch, lr: float("nan"), ValueError, "returned the learning rate nan for epoch 0"),
    (lambda epoch, lr: 0.0, ValueError, "returned the learning rate 0.0 for epoch 0"),
    (lambda epoch, lr: -lr, ValueError, "learning rate -0.1 for epoch 0"),
    (lambda epoch, lr: "0.1", TypeError, "returned str '0.1' for epoch 0"),
    (lambda epoch, lr: None, TypeError, "returned NoneType"),
])
def test_learning_rate_scheduler_bad_rates(fn, error, match):
    cb = LearningRateScheduler(fn)
    model = FakeModel(lr=0.1)
    cb.set_model(model)
    with pytest.raises(error, match=match):
        cb.on_epoch_begin(0, {})
    assert model.optimizer.lr == 0.1


def test_learning_rate_scheduler_checks_the_models_dtype_and_signature():
    cb = LearningRateScheduler(lambda epoch, lr: 1e39)
    model = FakeModel(lr=0.1, dtype="float32")
    cb.set_model(model)
    with pytest.raises(ValueError, match="1e\\+39 is inf in float32"):
        cb.on_epoch_begin(0, {})
    assert model.optimizer.lr == 0.1
    with pytest.raises(TypeError, match=r"must accept \(epoch, lr\) or \(epoch\)"):
        LearningRateScheduler(lambda a, b, c: 0.1)
    with pytest.raises(TypeError, match="schedule must be a function"):
        LearningRateScheduler(0.1)


def test_learning_rate_callbacks_refuse_a_scheduled_optimizer():
    for cb in (LearningRateScheduler(lambda e, lr: lr), ReduceLROnPlateau()):
        model = FakeModel(lr=StepLR(0.1, step_size=10))
        cb.set_model(model)
        with pytest.raises(TypeError, match="the optimizer's lr is StepLR.*a schedule"):
            cb.on_train_begin({})
        assert isinstance(model.optimizer.lr, StepLR)


# ---- TerminateOnNaN ------------------------------------------------------------------------------
def test_terminate_on_nan(capsys):
    cb = TerminateOnNaN()
    model = FakeModel()
    cb.set_model(model)
    cb.on_train_begin({})
    cb.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.7, "note": "text", "count": 3})
    assert not model.stop_training and cb.stopped_epoch is None
    cb.on_epoch_end(1, {"loss": 0.4, "val_loss": float("nan"), "val_accuracy": np.float64(np.inf)})
    assert model.stop_training and cb.stopped_epoch == 1
    assert cb.bad_keys == ["val_loss", "val_accuracy"]
    assert "Epoch 2: invalid val_loss = nan, val_accuracy = inf" in capsys.readouterr().out
    model.stop_training = False
    cb.on_epoch_end(2, {"loss": -np.inf})
    assert model.stop_training and cb.bad_keys == ["loss"]


def test_every_callback_runs_in_one_fit(digits, tmp_path):
    """All together in one fit: fit accepts their hooks' signatures, and they cooperate."""
    X, y, Xv, yv = digits
    model = make_model()
    callbacks = [LearningRateScheduler(lambda e, lr: lr), ReduceLROnPlateau(patience=5),
                 EarlyStopping(patience=5), TerminateOnNaN(),
                 ModelCheckpoint(str(tmp_path / "m.npz"), save_best_only=True),
                 CSVLogger(str(tmp_path / "log.csv"))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(X, y, epochs=2, validation_data=(Xv, yv), callbacks=callbacks)
    assert history.epochs == 2 and os.path.exists(tmp_path / "m.npz")
    assert read_csv(str(tmp_path / "log.csv"))[0][-1] == "learning_rate"
