"""The lookup daemon: answers Postfix and Dovecot from an in-memory snapshot."""
