"""Shared foundation: settings, errors and database primitives. Imports nothing of ours."""
