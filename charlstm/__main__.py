"""`python -m charlstm` runs the command-line interface."""

from charlstm.cli import cli

cli()
