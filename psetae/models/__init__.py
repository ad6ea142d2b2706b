"""psetae.models."""
