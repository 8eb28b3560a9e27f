"""The bottom layer (docs/engine.md, "Module map"): what every other layer may import and which imports no
other layer: errors, paths, the registry, the version, the device and where training reports progress."""
