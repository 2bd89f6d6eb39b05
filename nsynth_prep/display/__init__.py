"""Every figure primitive and the palette. The only package that imports matplotlib; it never selects a backend."""
