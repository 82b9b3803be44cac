"""Persistence: the schema, migrations and the SQL store (SQLite or PostgreSQL)."""
