"""Storage: the PostgreSQL schema's models, connections and migrations, the embedded server, and
the one way a partition of a table is replaced."""
