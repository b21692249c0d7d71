"""One module per paper, reading like its method section."""
