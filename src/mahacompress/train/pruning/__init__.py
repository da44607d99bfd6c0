"""Block movement pruning of BERT-family classifiers, down to a physically smaller checkpoint.

structure.py says which Linears are pruned, masks.py how masks are learned, schedule.py when,
compact.py how masks become a smaller model, modeling_pruned.py is the code saved beside it, and
prune.py runs it all through the project's one training loop.
"""
