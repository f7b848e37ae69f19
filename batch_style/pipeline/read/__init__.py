"""Reading manifests: YAML with line numbers, jobs key by key, the files and masks they name."""
