"""The actor runtime: base actor, clock, supervisor and restart policy, node context, logging."""
