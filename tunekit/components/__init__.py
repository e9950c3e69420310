"""Everything a config can name by string: datasets, models, initializers, optimizers, schedules, losses, metrics, samplers and pruners; each a registry."""
