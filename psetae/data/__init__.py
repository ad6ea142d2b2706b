"""psetae.data."""
