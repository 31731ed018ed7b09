"""Running models: offline tokenizer loading (and, later, generation). Imports nothing heavy."""
