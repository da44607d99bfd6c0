"""Stage 9, `optimize`: the fastest model within a budget of the user's teacher, built with the study's
recipes (`optimize`). Imports every earlier stage but `report`."""
