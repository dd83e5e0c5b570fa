"""Billing: `costs_daily`, what OpenAI bills, to reconcile estimates with."""
