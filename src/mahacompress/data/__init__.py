"""Stage 1, labelled text: datasets found, read, cleaned and split (`datasets`), and transfer sets of
unlabelled text (`transfer`). Imports `core` only."""
