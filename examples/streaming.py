"""Streaming: chunks arrive as tokens are generated; the last one carries the usage."""

import onrails

client = onrails.Client()
stream = client.chat.completions.create(
    messages=[{"role": "user", "content": "Describe a city as JSON."}],
    grammar_root="object",
    max_tokens=40,
    seed=1,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
    elif chunk.usage is not None:
        print(f"\n{chunk.usage.completion_tokens} tokens")
