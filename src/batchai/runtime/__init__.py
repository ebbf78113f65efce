"""Running a job's processes: launch plans (environment, mounts, command lines) and supervision."""
