"""The llama.cpp engine: where its source comes from, how it is built, found and run."""
