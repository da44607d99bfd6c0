"""Stage 7, the study: the grid's row recipes (`recipes`; a row's spec and preset sections, `rowspec`; each kind's
builder, `builders`) and what they build with (`context`), presets (`preset`), the TF-IDF reference (`tfidf`), the
runner (`grid`; its rows' figures, `scoring`; its timing session, `timing`; the meta and caveats beside its rows,
`meta`) and the results file it writes (`results`).
Imports every earlier stage."""
