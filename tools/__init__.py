"""tools: see README; implemented in later issues."""
