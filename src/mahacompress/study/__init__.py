"""Stage 7, the study: the grid's row recipes (`recipes`) and what they build with (`context`), presets
(`preset`), the TF-IDF reference (`tfidf`), the runner (`grid`) and the results file it writes (`results`).
Imports every earlier stage."""
