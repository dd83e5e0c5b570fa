"""Prices: where they come from (genai-prices, the shipped lists, the override file), their
snapshots, and the set-based SQL that prices usage into the cost tables."""
