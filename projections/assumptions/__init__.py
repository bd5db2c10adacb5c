"""Strategy assumptions as testable claims: the file, cohorts, deal facts, statistics, verdicts."""
