"""The engine: one cell's training loop (``loop.train_cell``), its step, state, evaluation, diagnostics and
the data-parallel collective (docs/engine.md). It reads a ``CellSpec`` and knows no suite, store or method
by name."""
