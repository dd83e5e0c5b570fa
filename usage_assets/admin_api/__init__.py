"""The OpenAI Admin API: the HTTP transport (`transport`), one description per usage endpoint
(`endpoints`), and the contracts of the usage (`usage`), costs (`costs`) endpoints; `rows` turns
usage results into table rows."""
