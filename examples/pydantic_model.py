"""A pydantic model as response_format: the parsed instance comes back on the message."""

from pydantic import BaseModel

import onrails


class Pet(BaseModel):
    name: str
    species: str
    legs: int


client = onrails.Client()
result = client.chat.completions.create(
    messages=[{"role": "user", "content": "Invent a pet."}], response_format=Pet, max_tokens=48, seed=1
)
pet = result.choices[0].message.parsed
print(repr(pet))

# The one-call form: parse=True returns the instance.
print(repr(onrails.generate("Invent another pet.", response_format=Pet, max_tokens=48, seed=2, parse=True)))
