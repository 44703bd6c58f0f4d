"""Simulated tasks used in the book (gymnasium environments)."""
