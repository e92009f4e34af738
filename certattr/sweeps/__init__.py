"""certattr.sweeps."""
