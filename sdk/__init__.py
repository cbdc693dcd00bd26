"""The client SDK: edge lookup, QUIC sessions, channels. Imports only the ground."""
