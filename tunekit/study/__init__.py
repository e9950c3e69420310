"""Running a study: options, storage (the only user of Optuna's private API), create-or-resume, one
trial, population grouping, the worker loop, --workers, liveness, `train`, validate/--dry-run."""
