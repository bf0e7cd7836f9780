"""pytest plugin: collection of scenarios/*.yaml into cells (being built)."""
