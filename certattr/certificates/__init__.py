"""certattr.certificates."""
