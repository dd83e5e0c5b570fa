"""Names: projects, users and API keys, for BI."""
