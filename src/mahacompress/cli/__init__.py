"""Stage 10, the command line (`app`): parses options, calls the library, prints. Imports every stage,
lazily where a stage imports torch, and holds no logic."""
