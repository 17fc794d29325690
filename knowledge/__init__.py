"""knowledge: see README; implemented in later issues."""
