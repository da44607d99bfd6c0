"""Stage 1, labelled text: where a dataset's files are (`sources`), one CSV read and cleaned (`csvfiles`), a dataset
split and its labels checked (`splits`), and transfer sets of unlabelled text (`transfer`). Imports `core` only."""
