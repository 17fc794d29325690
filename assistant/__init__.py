"""assistant: see README; implemented in later issues."""
