"""`python -m promptopt` runs the command line."""

from promptopt.cli.entry import main

main()
