"""Preprocessing of user uploads (WIP)."""
