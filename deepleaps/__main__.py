"""``python -m deepleaps``: the command line."""

from deepleaps.cli import main

main()
