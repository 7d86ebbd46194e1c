"""The signed Levret client and its typed models."""
