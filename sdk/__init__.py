"""The client SDK: edge resolution, sessions, channels (arrives with the data plane)."""
