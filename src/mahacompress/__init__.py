"""mahacompress: make transformer text classifiers for Marathi small, fast and cheap to run."""

__version__ = "0.1.0"
