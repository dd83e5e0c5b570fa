"""Chargeback assets: the bill allocated, budgets, anomalies."""
