"""The results store: records and their schema, the numerics versions that say whether a record is stale,
the identity of the code and the machine that made it, and the audits of a store (docs/engine.md, "Module map").
Below the engine: imports neither the engine nor torch, so reading a store is fast."""
