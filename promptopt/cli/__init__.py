"""The command line (typer): one module per command; the only code that prints or exits."""
