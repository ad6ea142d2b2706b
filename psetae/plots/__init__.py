"""psetae.plots."""
