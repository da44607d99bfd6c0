"""Stage 9, `optimize`: the fastest model within a budget of the user's teacher, built with the study's
recipes: the command (`optimize`), its candidates and their untrained shapes (`candidates`), its measurements
and pass rule (`scoring`), the search's pure decisions (`bisect`), its trials and
what a re-run reuses (`trials`), trials on Ray workers (`workers`), the winner's export (`winner`) and its
report (`report`). Imports every earlier stage but `report`."""
