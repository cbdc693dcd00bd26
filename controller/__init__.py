"""The controller: keeps the measured topology and pushes routes to the relays."""
