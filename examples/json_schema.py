"""A JSON Schema as response_format: every sample validates."""

import json

import onrails

schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
    },
    "required": ["name", "age", "hobbies"],
    "additionalProperties": False,
}

client = onrails.Client()
result = client.chat.completions.create(
    messages=[{"role": "user", "content": "Invent a person."}],
    response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
    n=3,
    seed=1,
    max_tokens=48,
)
for choice in result.choices:
    print(json.loads(choice.message.content or ""))
print(result.usage)
