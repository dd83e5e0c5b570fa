"""BI tools over the usage database (README "A dashboard in Superset"). Nothing here is part of
the Dagster code location, and nothing here imports a BI tool: each runs in its own virtual
environment, driven as a separate program."""
