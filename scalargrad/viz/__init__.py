"""Pictures of computational graphs."""
