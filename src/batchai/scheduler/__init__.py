"""Scheduling: a pure matcher of queued jobs to free nodes, and the engine that applies its decisions."""
