"""Room benchmark for the SFU: a server process and synthetic participants in other processes."""
