"""Database: schema (SQLAlchemy 2), engine/session factory, migrations and repositories."""
