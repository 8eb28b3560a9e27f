"""``python -m protobench`` is the ``protobench`` command."""

from protobench.cli.main import main

main()
