"""Defense jobs: options, intake, the database rows, the steps the workers run."""
