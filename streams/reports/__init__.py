"""Reports as plain documents, used by the command line and the dashboard alike."""
