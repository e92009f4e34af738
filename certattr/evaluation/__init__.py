"""certattr.evaluation."""
