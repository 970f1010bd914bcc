"""Persistence: blobs (data and flows), runs, items and step results."""
