"""Beat: the jobs of `schedules_dir` fired once per slot by one active scheduler,
paused and resumed by people."""
