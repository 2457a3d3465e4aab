"""The testbed: a char-level tokenizer, masked-diffusion pretraining of a tiny teacher, and the quickstart."""
