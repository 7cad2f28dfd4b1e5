"""The record of a ``fit`` call."""
import numpy as np


class History:
    """What ``fit`` returns: per-epoch metrics and the counting of the run.

    ``history["loss"]`` (and "accuracy" for classification losses, and the
    "val_" variants with validation data) hold one value per epoch; the
    training loss and accuracy of an epoch are the sample-weighted means over
    its batches, each measured before that batch's update (as Keras reports them).

    Attributes
    ----------
    history : dict of lists, the per-epoch metrics
    iterations_per_epoch : ceil(N / batch_size), or floor with drop_last
    n_updates : the weight updates made (iterations completed)
    batch_size : the batch size used (N for full-batch gradient descent)
    n_samples : N
    grad_norms : (epochs, n_layers) array, per-epoch mean L2 norm of each parameterised
        layer's weight gradient (before clipping)
    grad_norms_per_iteration : (n_updates, n_dense) array, recorded when ``fit``
        is called with record_grad_norms="iteration"; otherwise None
    loss_per_iteration : (n_updates,) array, each batch's mean loss before its update
    layer_names : the parameterised layers' names ("dense_0", "conv1d_0",
        "batchnorm_0", ...), the columns of grad_norms
    """

    def __init__(self, n_samples, batch_size, iterations_per_epoch, layer_names, per_iteration):
        self.history = {}
        self.n_samples = n_samples
        self.batch_size = batch_size
        self.iterations_per_epoch = iterations_per_epoch
        self.n_updates = 0
        self.layer_names = list(layer_names)
        self._epoch_norms = []
        self._iteration_norms = [] if per_iteration else None
        self._iteration_losses = []

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def keys(self):
        return self.history.keys()

    @property
    def epochs(self):
        """The number of epochs completed."""
        return len(self._epoch_norms)

    @property
    def grad_norms(self):
        return np.array(self._epoch_norms, dtype=np.float64).reshape(-1, len(self.layer_names))

    @property
    def grad_norms_per_iteration(self):
        if self._iteration_norms is None:
            return None
        if not self._iteration_norms:
            return np.zeros((0, len(self.layer_names)))
        return np.concatenate(self._iteration_norms)

    def record_epoch(self, metrics, norms):
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(float(value))
        self._epoch_norms.append(np.asarray(norms, dtype=np.float64))

    @property
    def loss_per_iteration(self):
        return np.concatenate(self._iteration_losses) if self._iteration_losses else np.zeros(0)

    def record_iterations(self, losses, norms):
        self.n_updates += norms.shape[0]
        self._iteration_losses.append(np.array(losses, dtype=np.float64))
        if self._iteration_norms is not None:
            self._iteration_norms.append(np.array(norms, dtype=np.float64))

    def __repr__(self):
        last = ", ".join(f"{k}={v[-1]:.4g}" for k, v in self.history.items() if v)
        return (f"History(epochs={self.epochs}, iterations_per_epoch={self.iterations_per_epoch}, "
                f"n_updates={self.n_updates}{', ' + last if last else ''})")
