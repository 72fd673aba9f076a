"""Layout-guided generation: layout (boxes and their words), generation (the optimisation that follows them)."""
