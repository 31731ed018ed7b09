"""onrails.generate with a few built-in grammar roots: the output always parses."""

import onrails

# The default root is "object": a JSON object.
print(onrails.generate("Describe a cat.", max_tokens=32, seed=1))

# parse=True returns the parsed value instead of the text.
colours = onrails.generate("List three colours.", grammar_root="array", max_tokens=24, seed=2, parse=True)
print(type(colours).__name__, colours)

# "func": one call {"name": ..., "arguments": {...}}.
print(onrails.generate("Call a function that books a table for two.", grammar_root="func", max_tokens=32, seed=3))

# Even when max_tokens cuts the answer short, it is steered to a parsable end.
print(onrails.generate("Describe the solar system in detail.", max_tokens=12, seed=4, parse=True))

# A Lark grammar of your own.
grammar = 'start: "Answer: " ("yes" | "no") "."\n'
print(onrails.generate("Is water wet?", grammar=grammar, max_tokens=10, temperature=0))
