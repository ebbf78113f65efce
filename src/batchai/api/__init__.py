"""The HTTP API: the app factory, authentication, ARM error bodies and thin routes per resource."""
