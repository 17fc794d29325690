"""finetune: see README; implemented in later issues."""
