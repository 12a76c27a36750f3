"""The engine: configs, run dirs, trainers, sweeps, the phenomenon registry, statistics and reports."""
