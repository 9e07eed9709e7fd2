"""Database runtime: the embedded PostgreSQL cluster, connection resolution and migrations."""
