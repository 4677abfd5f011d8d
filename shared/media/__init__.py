"""Media: decoding, validation, storage."""
