"""Running grids: the runner that trains a suite's cells (in workers, shards or torchrun), the grid of cells,
sharding, the locks and checkpoints that make runs resumable, interrupts, live loggers and tuning."""
