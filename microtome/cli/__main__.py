"""`python -m microtome.cli ARGS`: the `microtome` command."""

from microtome.cli import main

main()
