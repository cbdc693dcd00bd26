"""Network helpers shared by the relay, the edge and the SDK: batched UDP, aioquic tuning."""
