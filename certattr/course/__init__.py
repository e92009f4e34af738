"""certattr.course."""
