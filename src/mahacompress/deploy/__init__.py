"""Stage 6, shipping a model: the deployable folder (`export`) and the HTTP service over it (`serve`, copied
into every folder beside `infer/runtime.py`). Imports the earlier stages."""
