"""Protected tools, one small module each."""
