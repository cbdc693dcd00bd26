"""The `skymesh` command: the top floor, and the only code that wires relay/, controller/ and
sdk/ together. One module per command group; `skymesh.cli.main` assembles them."""
