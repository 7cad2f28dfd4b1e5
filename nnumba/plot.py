"""Plots of training runs (matplotlib, an optional dependency: ``pip install nnumba[plot]``).

- ``plot_history(history)``: loss (and accuracy) per epoch, with validation curves;
- ``plot_grad_norms(history)``: each Dense layer's weight-gradient norm on a log
  scale, per epoch or per iteration: vanishing gradients show as the first
  layer's curve orders of magnitude below the last one's;
- ``plot_paths(f, paths)``: optimizer paths over the contours of a 2-D function
  (Momentum against RMSprop on an elongated valley, from real runs; see
  docs/topics.md, "Optimizers").

Each returns the matplotlib Axes it drew on (a new figure's unless ``ax`` is given).
"""
import numpy as np


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def plot_history(history, metrics=("loss",), ax=None):
    """Per-epoch curves of ``metrics`` (and their "val_" variants when recorded)."""
    ax = _axes(ax)
    epochs = np.arange(1, history.epochs + 1)
    for metric in metrics:
        for key in (metric, f"val_{metric}"):
            if key in history:
                ax.plot(epochs, history[key], marker="o", ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel(", ".join(metrics))
    ax.legend()
    return ax


def plot_grad_norms(history, per_iteration=False, ax=None):
    """Each Dense layer's weight-gradient L2 norm, log scale, per epoch or iteration."""
    ax = _axes(ax)
    norms = history.grad_norms_per_iteration if per_iteration else history.grad_norms
    if norms is None:
        raise ValueError("per-iteration norms were not recorded: fit with record_grad_norms='iteration'")
    steps = np.arange(1, norms.shape[0] + 1)
    for k, name in enumerate(history.layer_names):
        ax.plot(steps, norms[:, k], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("iteration" if per_iteration else "epoch")
    ax.set_ylabel("||dW|| (L2)")
    ax.legend()
    return ax


def plot_paths(f, paths, xlim, ylim, levels=30, log_levels=True, ax=None):
    """Contours of f(x, y) over xlim x ylim and each path (name -> (steps, 2) array)."""
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
