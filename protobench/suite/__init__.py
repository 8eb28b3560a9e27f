"""The suite layer: suite files and their typed values, the training recipe, the ``CellSpec`` that names one
cell, and the ``Suite`` definition that checks a suite against the method, dataset and backbone registries
(docs/engine.md, "Module map"). Imports no torch."""
