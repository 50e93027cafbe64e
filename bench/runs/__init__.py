"""A run's files: writing and reading them, where results go besides them (loggers), and studies."""
