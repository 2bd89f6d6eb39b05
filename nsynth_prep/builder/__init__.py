"""Building caches (a folder named builder, not build: pytest and other tools skip build/ as output): plan the rows, write chunk blocks (locally or on Dask), resume after a kill."""
