"""reconciler: Terraform-style plan/apply for a Levret futures trading account."""

__version__ = "0.1.0"
