"""The `skymesh` command: the top floor, the only code that wires relay/, controller/ and
sdk/ together. One module per command group; `main` assembles them."""

from skymesh.cli.main import main

__all__ = ["main"]
