"""certattr.models."""
