"""Storage backends: where file shares and blob containers keep their bytes."""
