"""certattr.engine."""
