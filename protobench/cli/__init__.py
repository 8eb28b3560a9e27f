"""The protobench command line (Typer): ``protobench --help``."""
