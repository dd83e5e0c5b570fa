"""Attribution: estimated cost per project from usage and prices, and its reconciliation with
the bill."""
