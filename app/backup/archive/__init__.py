"""The backup file format only: writing, reading, inflating, parsing and signing archives. No SQL, no Flask."""
