"""Stage 5, measuring models: latency (`latency`) and memory, size, parameters and energy (`footprint`).
Imports the earlier stages; nothing here trains."""
