"""Budgets: the cluster-scoped cap on GPU-hours or money per team or namespace. Pure parts (the
window's bounds, the usage ledger, the training gate) below the controller and its handlers."""
