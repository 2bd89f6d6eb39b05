"""Building caches: plan the rows, write chunk blocks (locally or on Dask), resume after a kill."""
