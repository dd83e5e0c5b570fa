"""Chargeback: the bill allocated, budgets, anomalies."""
