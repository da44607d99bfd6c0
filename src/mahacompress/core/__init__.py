"""Stage 0, what every stage stands on: errors, settings (`config`), atomic writes and locks (`files`), the
machine (`hardware`), the backend names (`registry`), checks made before any work (`validate`; a model
source's: `model_source`) and the metrics (`metrics`). Imports nothing from the later stages."""
