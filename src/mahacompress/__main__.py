"""`python -m mahacompress` runs the command line."""

from .cli import main

main()
