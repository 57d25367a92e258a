"""Backup and restore: one archive holding the database, every document's content and a manifest."""
