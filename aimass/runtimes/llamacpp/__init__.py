"""llama.cpp generative runtime: continuous batching, sampling, chat templates, grammars."""
