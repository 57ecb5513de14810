"""Shared foundations: errors and settings."""
