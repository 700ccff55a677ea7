"""Backtest: two rule sets over the same history in lockstep, their differences and the
report an operations manager reads."""
