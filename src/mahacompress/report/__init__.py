"""Stage 8, the grid's report, from `results.json` alone (`render`). Imports `core` and `study.results`."""
