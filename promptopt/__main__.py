"""`python -m promptopt` runs the command line."""

from promptopt.cli import main

main()
