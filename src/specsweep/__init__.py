"""specsweep: speculative-decoding acceptance and speed sweeps on llama.cpp's llama-server."""

__version__ = "0.1.0"
