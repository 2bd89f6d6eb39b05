"""The zarr cache format: array names, chunking, attrs and version (cache.format), typed metadata, checked reads, verify. The spec: docs/cache-format.md."""
