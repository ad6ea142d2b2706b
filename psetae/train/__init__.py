"""psetae.train."""
