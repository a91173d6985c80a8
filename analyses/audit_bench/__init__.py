"""``ftmech audit-bench``: the audit scored on model pairs whose answer is known (a confusion matrix)."""
