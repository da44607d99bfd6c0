"""Stage 2, model folders: where models come from and how they are saved (`load`), the model classes a
mahacompress folder ships (`modeling_pruned`, `modeling_static`: one model, one file, importing nothing from
mahacompress) and vocabulary trimming (`trim`). Imports `core` and `data`."""
