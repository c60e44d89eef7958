"""The backup file format only: writing, reading, inflating, encrypting, parsing and signing archives. No SQL, no Flask."""
