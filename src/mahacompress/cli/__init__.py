"""Stage 10, the command line: the group, its one-line errors and `main` (`app`), shared options (`options`), checks
(`checks`) and printing (`output`), and the commands by stage (`train_commands`, `deploy_commands`,
`study_commands`). Parses options, calls the library, prints. Imports every stage, lazily where a stage imports
torch, and holds no logic."""
