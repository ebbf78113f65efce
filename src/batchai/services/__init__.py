"""Business rules, one module per resource. Routes call these; only these change stored state."""
