"""Stage 4, making smaller models: the ONE training loop (`loop`), its checkpoints
(`checkpoints`), its precision (`precision`), the processes a run was
launched as (`processes`), its log-file progress lines (`progress`), the distillation terms (`losses`),
distillation (`distill`), the static student (`static`) and pruning (`pruning/`).
Imports the earlier stages (`core`, `data`, `models`, `infer` for dev predictions)."""
