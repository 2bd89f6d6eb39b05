"""Where bytes live, for prep and train: local paths and fsspec URLs, atomic writes, writer locks and leases, storage errors."""
