"""Read-only tools for a real portal: the readiness check and the snapshot used for rehearsals."""
