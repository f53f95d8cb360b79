"""``vitopt gate``: budgets checked against a report, with noise-aware latency verdicts."""
