"""certattr.book."""
