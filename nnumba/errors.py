"""Exceptions of nnumba."""


class NonFiniteError(FloatingPointError):
    """Training met a NaN or infinite number and was stopped.

    ``kind`` says where: "loss" (the batch loss), "gradient" (the global
    gradient norm), "update" (a parameter after the step) or "optimizer state"
    (a state element after the step, such as Adam's v = beta2 v + (1 - beta2)
    g^2 overflowing) or "running statistics" (BatchNorm's, moved by the forward
    pass). ``epoch`` and ``iteration`` (both counted from 1;
    ``epoch`` is None for ``train_step``) name the iteration. Its update was not
    kept: the model keeps the weights, optimizer state and step count it had
    before that iteration. ``history`` holds the epochs completed before it
    (``fit`` only).
    """

    KINDS = ("loss", "gradient", "update", "optimizer state", "running statistics")

    def __init__(self, message, epoch=None, iteration=None, loss=None, history=None, kind="loss"):
        super().__init__(message)
        self.epoch = epoch
        self.iteration = iteration
        self.loss = loss
        self.history = history
        self.kind = kind
