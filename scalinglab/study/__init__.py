"""Studies: a `study.toml` plan -> a ladder of runs (plan.py) -> trained by an executor (executors.py) -> kept
in one SQLite store (store.py) -> fitted (fitting.py) -> reported; `runner.run_study` ties them together and
is resumable at any point."""
