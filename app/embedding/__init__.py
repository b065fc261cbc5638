"""Text embedding models run in-process on the server (numpy only, no PyTorch)."""
