"""The prediction store: SQLAlchemy 2 over PyMySQL (or SQLite when no MySQL is configured)."""
