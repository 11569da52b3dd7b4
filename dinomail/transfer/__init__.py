"""Moving an installation in and out: the export document, its import, PostfixAdmin's import.

The document (`document.py`) is one JSON object, versioned, described by the JSON Schema shipped
beside it (`export-schema.json`, also served at `/api/export-schema.json`). Objects refer to each
other by name (domain names, addresses, admin user names), never by database id, so a document
imports into an empty database or beside existing data alike.
"""
