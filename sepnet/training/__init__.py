"""Training: the LightningModules, losses, schedules, callbacks and loggers."""
