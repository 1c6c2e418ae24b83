"""Game days: a team runs a runbook of experiments one by one, watching a live view, deciding at each
gate, and writing down what they saw. Built on ``harness.runner.RunSession``."""
