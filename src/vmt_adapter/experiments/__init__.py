"""Experiments built on the training loop: speed and memory against the task count (``speed``, `vmt bench`),
the accuracy table of every method (``suite``, `vmt benchmark`) and its learning-rate ``sweep``, the ``demo``,
backbone pretraining (``pretrain``, ``upstream``), and the process runner they share (``processes``)."""
