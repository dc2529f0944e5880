"""Jobs as people write them: the public job API, cron, slots, and loading and
checking the job files of `schedules_dir`."""
