"""Model folders shipped with the project (the built-in model uses the same interface as yours)."""
