"""Across deals: totals by any key, learned thresholds, and roll-ups kept current."""
