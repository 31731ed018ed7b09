"""Running models under onrails' grammars: loading, the decoding loop, and the ways to call it.

- ``tokenizers``, ``models``: offline loading of tokenizers and causal language models (named
  models from installed packages, Hugging Face folders, GGUF files), with their vocabulary and
  grammar compiler.
- ``generation``: the batched, grammar-constrained decoding loop (masks, KV cache,
  jump-forward, steering at the token limit); ``sampling``: sampling parameters and logits
  processing; ``_batching``, ``_prefix_cache``: continuous batching and prompt-prefix reuse.
- ``api``: ``onrails.generate`` and the request plumbing shared by the clients.
- ``client``: the Python API, ``onrails.Client`` / ``AsyncClient`` (the Cerebras SDK's
  surface), over ``planning`` (parameter checks), ``chat`` (chat templating, tool-call turns),
  ``responses`` (typed results and stream chunks) and ``types`` (the response models).
- ``server``: the OpenAI / Cerebras-compatible HTTP server (``onrails serve``).
- ``hf``: a Hugging Face ``LogitsProcessor`` for ``model.generate``.
- ``vllm``: the vLLM logits-processor plugin (the only module that imports vLLM).

Importing this package imports none of them: torch and transformers load with the module that
needs them.
"""
