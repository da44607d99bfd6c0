"""`python -m mahacompress` runs the command line."""

from .cli.app import main

main()
