"""Recording: Variable, the recorder, eager backward, custom ops, symbolic tape transformations."""
