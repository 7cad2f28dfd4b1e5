"""Exceptions of nnumba."""


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or infinite loss (or gradient) and was stopped.

    ``epoch`` and ``iteration`` (both counted from 1; ``epoch`` is None for
    ``train_step``) name the iteration whose loss or gradient was not finite.
    Its update was not made: the model keeps the weights and optimizer state it
    had before that iteration. ``history`` holds the epochs completed before it
    (``fit`` only).
    """

    def __init__(self, message, epoch=None, iteration=None, loss=None, history=None):
        super().__init__(message)
        self.epoch = epoch
        self.iteration = iteration
        self.loss = loss
        self.history = history
