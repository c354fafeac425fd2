"""What clients send and get: the request and answer models (schemas), bodies turned into beans (parsing), and
every error a client can meet, with its message and how each transport renders it (errors)."""
