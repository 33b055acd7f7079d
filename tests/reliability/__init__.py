"""Proof for users: the fault table, fuzzing of everything a server can send, secret scans."""
