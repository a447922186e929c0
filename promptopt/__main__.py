"""`python -m promptopt` runs the command line."""

from promptopt.cli.main import main

main()
