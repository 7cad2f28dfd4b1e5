"""Plots of training runs. matplotlib is an optional dependency
(``pip install "nnumba[plot]"``): importing this module never needs it, the first
plot call does, and raises an ImportError naming the extra when it is missing.

- ``plot_history(history)``: per-epoch curves, one panel per metric kind (loss,
  accuracy, ...: loss and accuracy never share a y axis), training solid and
  validation dashed in one colour per run; ``per_iteration=True`` adds each
  batch's loss against the fractional epoch; an existing figure or axes can be
  passed to overlay several runs;
- ``compare_runs({name: history})``: one panel per metric, one colour per run;
- ``plot_grad_norms(history)``: each parameterised layer's weight-gradient norm
  on a log scale, per iteration when recorded (else per epoch), optionally
  smoothed by a moving average; ``view="median"`` summarises a deep network as
  the median over layers, the 10th-90th percentile band, and the first and last
  layer: vanishing gradients show as the first layer's curve orders of
  magnitude below the last one's;
- ``plot_gradients_through_time(result)``: ||dL/dh_t|| against the step t of each
  recurrent layer (``diagnostics.gradients_through_time``), on a log scale: a
  SimpleRNN's curve falls geometrically away from the loss, an LSTM's stays flat;
- ``plot_schedule(schedule, steps)``: a learning-rate schedule over optimizer steps;
- ``plot_paths(f, paths)``: optimizer paths over the contours of a 2-D function
  (Momentum against RMSprop on an elongated valley, from real runs; see
  docs/topics.md, "Optimizers").

``plot_history`` and ``compare_runs`` draw several panels: they return the new
Figure, or what they were given as ``ax`` (a Figure, an Axes, or a sequence of
Axes, one per panel). The one-panel plots return the Axes they drew on (a new
figure's unless ``ax`` is given).

A "history" is what ``Sequential.fit`` returns (``nnumba.History``); any object
with the same attributes works, and the per-epoch plots also take a plain
``{metric: [value per epoch]}`` dict (Keras's ``History.history``).
"""
from collections.abc import Mapping
import numbers

import numpy as np

from . import _checks

INSTALL_HINT = 'pip install "nnumba[plot]"'

# curves of one colour: per-epoch values with small markers (as the notebooks draw them),
# the per-iteration loss thin and light behind them
_EPOCH_STYLE = dict(marker="o", ms=3, lw=1.5)
_ITERATION_STYLE = dict(lw=0.8, alpha=0.3, zorder=1)
_PANEL_SIZE = (5.5, 4.0)
_MAX_LEGEND_LAYERS = 12    # beyond this, the layer view's legend names the first and last layer only
_CYCLE_LAYERS = 10         # beyond this, the layer view colours the layers by depth (viridis)


def _pyplot():
    """matplotlib.pyplot, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("nnumba.plot needs matplotlib, an optional dependency: install it with "
                          f"{INSTALL_HINT} (or pip install matplotlib)") from error
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


# ---- reading histories -----------------------------------------------------------

def _epoch_metrics(history, name="history"):
    """The per-epoch metrics of a History (its ``.history``) or of a plain dict."""
    if isinstance(history, Mapping):
        return history
    metrics = getattr(history, "history", None)
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{name} must be a History (what fit returns) or a dict of per-epoch "
                        f"lists, got {type(history).__name__}")
    return metrics


def _is_loss(metric):
    return metric == "loss" or metric.endswith("_loss")


def _base(key):
    return key[4:] if key.startswith("val_") else key


def _metric_kinds(metrics, keys, name):
    """The panels' metric names: ``metrics`` checked against the recorded keys, or
    every recorded kind (loss first, then in recording order) when it is None."""
    keys = list(keys)
    if metrics is None:
        kinds = []
        for key in keys:
            if _base(key) not in kinds:
                kinds.append(_base(key))
        kinds.sort(key=lambda kind: not _is_loss(kind))     # stable: loss panels first
        if not kinds:
            raise ValueError(f"{name} has no recorded metrics (was fit run for 0 epochs?)")
        return kinds
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        metrics = list(metrics)
    except TypeError:
        raise TypeError(f"metrics must be a sequence of metric names, got "
                        f"{type(metrics).__name__}") from None
    if not metrics:
        raise ValueError("metrics is empty: name at least one metric, e.g. ('loss',)")
    for metric in metrics:
        if not isinstance(metric, str):
            raise TypeError(f"metrics must hold metric names (str), got {type(metric).__name__} "
                            f"{metric!r}")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics names a metric twice: {metrics}")
    return metrics


def _curve_keys(metric, recorded, name):
    """The keys drawn for one metric: ``m`` (solid) and ``val_m`` (dashed) where
    recorded; a ``val_``-prefixed metric draws that key alone."""
    keys = [metric] if metric.startswith("val_") else [metric, f"val_{metric}"]
    found = [key for key in keys if key in recorded and len(recorded[key]) > 0]
    if not found:
        raise ValueError(f"{name} has no {' or '.join(repr(k) for k in keys)} recorded; "
                         f"it has {sorted(recorded)}")
    return found


def _per_epoch(values, key, name):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name}[{key!r}] must be one value per epoch, got shape {values.shape}")
    return np.arange(1, values.size + 1), values


# ---- panels ------------------------------------------------------------------------

def _panels(ax, kinds):
    """(axes, what to return) for one panel per metric kind, made or taken from ``ax``."""
    n = len(kinds)
    if ax is None:
        plt = _pyplot()
        fig, grid = plt.subplots(1, n, figsize=(_PANEL_SIZE[0] * n, _PANEL_SIZE[1]), squeeze=False)
        return list(grid[0]), fig
    from matplotlib.axes import Axes
    from matplotlib.figure import FigureBase

    if isinstance(ax, FigureBase):
        axes, what = list(ax.axes), "the figure"
    elif isinstance(ax, Axes):
        axes, what = [ax], "one Axes"
    else:
        try:
            axes = list(np.ravel(np.asarray(ax, dtype=object)))
        except TypeError:
            axes = None
        if not axes or not all(isinstance(a, Axes) for a in axes):
            raise TypeError(f"ax must be a matplotlib Figure, an Axes or a sequence of Axes, got "
                            f"{type(ax).__name__}")
        what = f"a sequence of {len(axes)} Axes"
    if len(axes) != n:
        raise ValueError(f"ax is {what} with {len(axes)} axes, but {n} panels are drawn "
                         f"({', '.join(kinds)}): loss and other metrics never share a y axis; "
                         f"pass {n} axes, e.g. plt.subplots(1, {n})[1]")
    return axes, ax


def _label(prefix, text):
    return text if prefix is None else f"{prefix}: {text}"


def _finish_panel(ax, kind, log, x_label="epoch"):
    ax.set_xlabel(x_label)
    ax.set_ylabel(kind)
    if log and _is_loss(kind):
        from matplotlib.ticker import LogFormatter

        ax.set_yscale("log")
        # a loss that stays within one decade gets plain minor labels ("2.4", not "2.4x10^0")
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    ax.grid(True, alpha=0.3)


def plot_history(history, metrics=None, label=None, ax=None, per_iteration=False, *, log=False,
                 color=None):
    """Per-epoch training curves of one run, one panel per metric kind.

    Parameters
    ----------
    history : History (what ``fit`` returns), or a ``{metric: [value per epoch]}`` dict
    metrics : metric names, one panel each: ``m`` draws ``history[m]`` (training,
        solid) and ``history["val_" + m]`` (validation, dashed, the same colour)
        where recorded; ``"val_m"`` draws the validation curve alone. None: every
        recorded kind, loss first (``("loss", "accuracy")`` for a classifier).
        Loss and accuracy are never drawn on the same y axis.
    label : str, prefixes the legend entries ("adam: loss", "adam: val_loss"), so
        that several runs can share the axes
    ax : None (a new figure, one panel per metric side by side), or the Figure or
        the Axes (one per panel, in ``metrics`` order) of an earlier call, to
        overlay this run; a single Axes when there is one panel
    per_iteration : also draw each batch's loss (``history.loss_per_iteration``,
        measured before that batch's update) thin and light on the loss panel, at
        the fractional epoch x_i = i / iterations_per_epoch of iteration
        i = 1, 2, ...; the end of epoch e is x = e, where that epoch's mean
        (the per-epoch point) is drawn
    log : draw the loss panels (metrics named "loss" or "*_loss") on a log y axis
    color : the run's colour; by default the next colour of the first panel's
        property cycle, so that overlaid runs get different colours

    Epoch e = 1, 2, ... is the x of the e-th recorded value. Returns the new
    Figure, or ``ax`` as given.
    """
    _pyplot()
    recorded = _epoch_metrics(history)
    kinds = _metric_kinds(metrics, recorded.keys(), "history")
    curves = [_curve_keys(kind, recorded, "history") for kind in kinds]
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a str, got {type(label).__name__}")
    per_iteration = _checks.boolean(per_iteration, "per_iteration")
    log = _checks.boolean(log, "log")
    if per_iteration:
        iteration_losses, ipe = _iteration_losses(history)
        if "loss" not in kinds:
            raise ValueError(f"per_iteration=True draws the per-iteration loss on the 'loss' panel, "
                             f"but metrics {kinds} has no 'loss'")
    axes, result = _panels(ax, kinds)
    for panel, kind, keys in zip(axes, kinds, curves):
        for key in keys:
            x, y = _per_epoch(recorded[key], key, "history")
            style = dict(_EPOCH_STYLE, ls="--" if key.startswith("val_") else "-")
            if color is not None:
                style["color"] = color
            (line,) = panel.plot(x, y, label=_label(label, key), **style)
            color = line.get_color()
        if per_iteration and kind == "loss":
            x = np.arange(1, iteration_losses.size + 1) / ipe
            panel.plot(x, iteration_losses, color=color, label=_label(label, "loss per iteration"),
                       **_ITERATION_STYLE)
        _finish_panel(panel, kind, log)
        panel.legend(fontsize=8)
    return result


def _iteration_losses(history):
    losses = getattr(history, "loss_per_iteration", None)
    ipe = getattr(history, "iterations_per_epoch", None)
    if losses is None or ipe is None:
        raise ValueError("per_iteration=True needs a History from fit (loss_per_iteration and "
                         f"iterations_per_epoch), got {type(history).__name__}")
    losses = np.asarray(losses, dtype=np.float64).ravel()
    if losses.size == 0:
        raise ValueError("per_iteration=True, but the history has no iterations "
                         "(loss_per_iteration is empty)")
    ipe = _checks.integer(ipe, "history.iterations_per_epoch", minimum=1)
    return losses, ipe


def compare_runs(histories, metrics=("loss",), ax=None, log=False):
    """Several runs side by side: one panel per metric, one colour per run.

    Parameters
    ----------
    histories : dict {run name: History (or per-epoch dict)}, drawn in its order
    metrics : metric names (None: those of the first run), one panel each; ``m``
        draws every run's ``m``
        (training, solid) and its ``val_m`` (validation, dashed, the run's colour)
        where recorded; ``"val_m"`` draws the validation curves alone. Every run
        must have recorded each metric (else ValueError naming the run).
    ax : None (a new figure), or a Figure / sequence of Axes with one Axes per
        metric (a single Axes for one metric)
    log : draw the loss panels ("loss", "*_loss") on a log y axis, where optimizers
        that differ by orders of magnitude stay readable

    The legend of each panel names the runs (one entry per run, in its colour),
    and, when a panel has validation curves, a "training" (solid) and a
    "validation" (dashed) entry for the line styles. Returns the new Figure, or
    ``ax`` as given.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D

    if not isinstance(histories, Mapping):
        raise TypeError(f"histories must be a dict {{run name: History}}, got "
                        f"{type(histories).__name__}")
    if not histories:
        raise ValueError("histories is empty: give at least one run, {name: History}")
    runs = {str(name): _epoch_metrics(h, f"histories[{name!r}]") for name, h in histories.items()}
    if len(runs) != len(histories):
        raise ValueError("histories has run names that are equal as str; give distinct names")
    first = next(iter(runs))
    kinds = _metric_kinds(metrics, runs[first].keys(), f"histories[{first!r}]")
    log = _checks.boolean(log, "log")
    curves = {name: [_curve_keys(kind, recorded, f"histories[{name!r}]") for kind in kinds]
              for name, recorded in runs.items()}
    axes, result = _panels(ax, kinds)
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for k, (name, recorded) in enumerate(runs.items()):
        color = cycle[k % len(cycle)]
        for panel, keys in zip(axes, curves[name]):
            for j, key in enumerate(keys):
                x, y = _per_epoch(recorded[key], key, f"histories[{name!r}]")
                panel.plot(x, y, color=color, ls="--" if key.startswith("val_") else "-",
                           label=name if j == 0 else f"_{name}: {key}", **_EPOCH_STYLE)
    for panel, kind in zip(axes, kinds):
        handles, labels = panel.get_legend_handles_labels()
        if any(line.get_linestyle() == "--" for line in panel.lines):
            handles += [Line2D([], [], color="0.3", ls="-"), Line2D([], [], color="0.3", ls="--")]
            labels += ["training", "validation"]
        _finish_panel(panel, kind, log)
        panel.legend(handles, labels, fontsize=8)
    return result


# ---- gradient norms ------------------------------------------------------------------

def moving_average(values, window):
    """The trailing moving average along axis 0, without the partial first windows.

    a_i = (v_{i-w+1} + ... + v_i) / w   for i = w, ..., n  (1-based),

    so the result has n - w + 1 rows, and row j is the mean of rows j .. j+w-1 of
    ``values`` (pandas' ``rolling(w).mean()`` with its w - 1 leading NaNs dropped).
    Each window is summed directly (no running-sum differences, which would lose
    the small values after a large spike). ``window=1`` returns the values.
    """
    values = np.asarray(values, dtype=np.float64)
    window = _checks.integer(window, "window", minimum=1)
    if values.ndim == 0 or window > values.shape[0]:
        n = 0 if values.ndim == 0 else values.shape[0]
        raise ValueError(f"window {window} is longer than the {n} values")
    if window == 1:
        return values.copy()
    windows = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)
    return windows.mean(axis=-1)


def _auto_window(n, iterations_per_epoch, per_iteration):
    """``smooth="auto"``'s window: one epoch of iterations (each sample seen once, so
    the mini-batch noise averages out), at most a tenth of the run, at least 1;
    1 for per-epoch norms (each is already the mean over its epoch)."""
    if not per_iteration:
        return 1
    return int(max(1, min(int(iterations_per_epoch or 1), n // 10)))


def _grad_norm_data(history, per_iteration):
    names = list(getattr(history, "layer_names", None) or [])
    per_it = getattr(history, "grad_norms_per_iteration", None)
    if per_iteration is None:
        per_iteration = per_it is not None
    per_iteration = _checks.boolean(per_iteration, "per_iteration")
    if per_iteration:
        if per_it is None:
            raise ValueError("per-iteration norms were not recorded: fit with "
                             "record_grad_norms='iteration'")
        norms = per_it
    else:
        norms = getattr(history, "grad_norms", None)
        if norms is None:
            raise TypeError(f"history must be a History (what fit returns), got "
                            f"{type(history).__name__}")
    norms = np.asarray(norms, dtype=np.float64)
    if norms.ndim != 2:
        raise ValueError(f"the gradient norms must be a (steps, layers) array, got shape {norms.shape}")
    if norms.shape[1] != len(names):
        raise ValueError(f"the gradient norms have {norms.shape[1]} columns but history.layer_names "
                         f"has {len(names)} names")
    if norms.shape[1] == 0:
        raise ValueError("the model has no parameterised layers: no gradient norms to plot")
    if norms.shape[0] == 0:
        unit = "iterations" if per_iteration else "epochs"
        raise ValueError(f"no gradient norms recorded: the history has 0 {unit}")
    return norms, names, per_iteration


def plot_grad_norms(history, smooth=None, view="layers", ax=None, log=True, *, per_iteration=None):
    """Each parameterised layer's weight-gradient L2 norm ||dW_k|| over training.

    Parameters
    ----------
    history : History from ``fit``; its ``grad_norms_per_iteration`` (recorded with
        ``fit(..., record_grad_norms="iteration")``) are drawn against the
        iteration 1, 2, ..., else its per-epoch means ``grad_norms`` against the
        epoch; the columns are ``history.layer_names``
    smooth : None (raw), an int window w, or "auto": the trailing moving average
        a_i = mean(v_{i-w+1}, ..., v_i) of each layer's norms, drawn at steps
        i = w, ..., n (n - w + 1 points; see ``moving_average``). The window
        counts iterations (epochs for per-epoch norms). "auto" takes
        w = max(1, min(history.iterations_per_epoch, n // 10)): one epoch, in which
        every sample is seen once and the mini-batch noise averages out, at most
        a tenth of the run; w = 1 for per-epoch norms (already epoch means).
    view : "layers" draws one line per layer (coloured by depth, viridis, beyond
        10 layers); "median" summarises a deep network: the median over layers at
        each step (black), a band between the 10th and 90th percentiles over
        layers (numpy's linear interpolation), and the first and last layer's
        lines (one line when there is one layer). Smoothing is applied to each
        layer before the statistics.
    ax : an Axes to draw on, or None for a new figure
    log : a log y axis (vanishing and exploding gradients span orders of magnitude)
    per_iteration : None picks the per-iteration norms when recorded; True requires
        them (ValueError naming record_grad_norms otherwise); False takes the
        per-epoch means

    Returns the Axes.
    """
    _pyplot()
    if view not in ("layers", "median"):
        raise ValueError(f"view must be 'layers' or 'median', got {view!r}")
    log = _checks.boolean(log, "log")
    norms, names, per_iteration = _grad_norm_data(history, per_iteration)
    n, n_layers = norms.shape
    if smooth is None:
        window = 1
    elif isinstance(smooth, str):
        if smooth != "auto":
            raise ValueError(f"smooth must be None, a window (int >= 1) or 'auto', got {smooth!r}")
        window = _auto_window(n, getattr(history, "iterations_per_epoch", 1), per_iteration)
    else:
        window = _checks.integer(smooth, "smooth", minimum=1)
        if window > n:
            unit = "iterations" if per_iteration else "epochs"
            raise ValueError(f"smooth={window} is longer than the {n} recorded {unit}")
    values = moving_average(norms, window)
    steps = np.arange(window, n + 1)
    ax = _axes(ax)
    if view == "layers":
        if n_layers > _CYCLE_LAYERS:
            from matplotlib import colormaps

            colors = colormaps["viridis"](np.linspace(0.0, 0.9, n_layers))
        else:
            colors = [None] * n_layers
        lines = []
        for k, name in enumerate(names):
            kw = {} if colors[k] is None else {"color": colors[k]}
            lines += ax.plot(steps, values[:, k], label=name, lw=1, **kw)
        if n_layers > _MAX_LEGEND_LAYERS:
            ax.legend([lines[0], lines[-1]], [f"{names[0]} (first)", f"{names[-1]} (last)"],
                      fontsize=8, title=f"{n_layers} layers, colour by depth", title_fontsize=8)
        else:
            ax.legend(fontsize=8)
    else:
        low, median, high = np.percentile(values, [10, 50, 90], axis=1)
        ax.fill_between(steps, low, high, color="0.5", alpha=0.25, lw=0,
                        label="10th-90th percentile over layers")
        ax.plot(steps, median, color="k", lw=1.5, label=f"median over {n_layers} layers")
        ax.plot(steps, values[:, 0], color="C0", lw=1, label=f"{names[0]} (first)")
        if n_layers > 1:
            ax.plot(steps, values[:, -1], color="C3", lw=1, label=f"{names[-1]} (last)")
        ax.legend(fontsize=8)
    ax.set_yscale("log" if log else "linear")
    ax.set_xlabel("iteration" if per_iteration else "epoch")
    ax.set_ylabel("||dW|| (L2)" if window == 1 else f"||dW|| (L2), moving average of {window}")
    return ax


def plot_gradients_through_time(result, ax=None, label=None, log=True):
    """||dL/dh_t|| against the step t, one line per recurrent layer.

    ``result``: what ``nn.diagnostics.gradients_through_time`` returns (or a
    {name: norms per step} dict); ``label`` prefixes each line's name (to overlay
    several models on one ``ax``). Returns the Axes.
    """
    _pyplot()
    norms = getattr(result, "norms", result)
    if not isinstance(norms, Mapping) or not norms:
        raise TypeError("result must be what nn.diagnostics.gradients_through_time returns (or a "
                        "non-empty {layer name: norms per step} dict)")
    ax = _axes(ax)
    for name, values in norms.items():
        values = np.asarray(values, dtype=np.float64)
        ax.plot(np.arange(values.shape[0]), values, lw=1.5, marker=".", ms=3,
                label=name if label is None else f"{label}: {name}")
    ax.set_yscale("log" if _checks.boolean(log, "log") else "linear")
    ax.set_xlabel("step t")
    ax.set_ylabel("||dL/dh_t|| (L2 over batch and units)")
    ax.legend(fontsize=8)
    return ax


# ---- learning-rate schedules ---------------------------------------------------------

def _steps(steps):
    if isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
        n = _checks.integer(steps, "steps", minimum=1)
        return np.arange(1, n + 1, dtype=np.int64)
    if isinstance(steps, (str, bytes, bool)) or isinstance(steps, numbers.Number):
        raise TypeError(f"steps must be a number of steps (int) or a sequence of integer steps, "
                        f"got {type(steps).__name__} {steps!r}")
    array = np.asarray(steps)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"steps must be a non-empty 1-D sequence of integers, got shape {array.shape}")
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        return array.astype(np.int64)
    raise TypeError(f"steps must hold integers, got dtype {array.dtype}")


def schedule_values(schedule, steps):
    """The learning rate of each step (int64 array) as a float64 array.

    ``schedule`` is an object with ``values(first_step, n)`` (the learning rates of
    steps first_step, ..., first_step + n - 1, as ``nnumba.schedules`` and the
    optimizers' ``lr`` use them: step 1 is the first update), evaluated in one
    call over the span of ``steps`` (or one call per step when the steps are
    sparse), or a callable ``step -> lr``.
    """
    if hasattr(schedule, "values") and callable(schedule.values) and not isinstance(schedule, Mapping):
        lo, hi = int(steps.min()), int(steps.max())
        span = hi - lo + 1
        if span <= 4 * steps.size + 1024:
            values = np.asarray(schedule.values(lo, span), dtype=np.float64)
            if values.shape != (span,):
                raise ValueError(f"schedule.values({lo}, {span}) returned shape {values.shape}, "
                                 f"expected ({span},)")
            values = values[steps - lo]
        else:
            values = np.array([np.asarray(schedule.values(int(s), 1), dtype=np.float64).ravel()[0]
                               for s in steps])
    elif callable(schedule):
        values = np.array([float(schedule(int(s))) for s in steps], dtype=np.float64)
    else:
        raise TypeError("schedule must have values(first_step, n) (an nnumba.schedules object) or be "
                        f"a callable step -> lr, got {type(schedule).__name__}")
    bad = np.nonzero(~np.isfinite(values))[0]
    if bad.size:
        raise ValueError(f"the schedule gave a non-finite learning rate {values[bad[0]]} at step "
                         f"{int(steps[bad[0]])}")
    return values


def plot_schedule(schedule, steps, ax=None, *, label=None, log=False):
    """A learning-rate schedule drawn over optimizer steps.

    Parameters
    ----------
    schedule : an object with ``values(first_step, n)`` (``nnumba.schedules``) or a
        callable ``step -> lr``
    steps : int n (steps 1, ..., n; step 1 is the first update, as
        ``Optimizer.lr_at``) or a sequence of integer steps
    ax : an Axes to draw on (e.g. to overlay schedules), or None for a new figure
    label : the legend entry (a legend is drawn when given)
    log : a log y axis

    Returns the Axes.
    """
    _pyplot()
    steps = _steps(steps)
    log = _checks.boolean(log, "log")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a str, got {type(label).__name__}")
    values = schedule_values(schedule, steps)
    ax = _axes(ax)
    ax.plot(steps, values, lw=1.5, label=label, marker="o" if steps.size <= 30 else None, ms=3)
    ax.set_xlabel("step (optimizer update)")
    ax.set_ylabel("learning rate")
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if label is not None:
        ax.legend(fontsize=8)
    return ax


# ---- optimizer paths -------------------------------------------------------------------

def plot_paths(f, paths, xlim, ylim, levels=30, log_levels=True, ax=None):
    """Contours of f(x, y) over xlim x ylim and each path (name -> (steps, 2) array).

    With ``log_levels`` the contour levels are geometrically spaced between the
    smallest positive value of f on the grid (at least 1e-12 of its largest) and
    its largest, so the floor of a valley stays visible. Returns the Axes.
    """
    _pyplot()
    ax = _axes(ax)
    xs, ys = np.linspace(*xlim, 300), np.linspace(*ylim, 300)
    grid_x, grid_y = np.meshgrid(xs, ys)
    z = f(grid_x, grid_y)
    if log_levels:
        lo = max(float(np.min(z)), 1e-12 * max(float(np.max(z)), 1e-300))
        lo = lo if lo > 0 else 1e-6
        ax.contour(grid_x, grid_y, z, levels=np.geomspace(lo, float(np.max(z)), levels),
                   cmap="Greys", linewidths=0.6)
    else:
        ax.contour(grid_x, grid_y, z, levels=levels, cmap="Greys", linewidths=0.6)
    for name, path in paths.items():
        path = np.asarray(path)
        ax.plot(path[:, 0], path[:, 1], marker=".", ms=3, lw=1, label=name)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.legend()
    return ax
