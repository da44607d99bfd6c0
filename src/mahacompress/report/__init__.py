"""Stage 8, the grid's report, from `results.json` alone: `findings` (what the rows show, as data), `tables`,
`markdown` (the findings worded), `plots`, and `render` (`write_report`, which writes them). Imports `core`
and `study.results`."""
