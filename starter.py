"""The operator's command line: `python starter.py COMMAND ...` (or the installed `icr` command).
The commands live in icr/cli/, one module per group; this file is the entry point only."""

from icr.cli.main import run

if __name__ == "__main__":
    run()
