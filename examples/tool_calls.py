"""Tool calls with each tool_choice: arguments always parse and match the tool's parameters."""

import json

import onrails

tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
        },
    },
]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
client = onrails.Client()
for tool_choice in ("auto", "required", {"type": "function", "function": {"name": "get_weather"}}, "none"):
    result = client.chat.completions.create(
        messages=messages, tools=tools, tool_choice=tool_choice, max_tokens=32, seed=1
    )
    message = result.choices[0].message
    print(f"tool_choice={json.dumps(tool_choice)}: finish_reason={result.choices[0].finish_reason}")
    for call in message.tool_calls or []:
        print(f"  {call.id} {call.function.name}({json.loads(call.function.arguments)})")
    if message.content is not None:
        print(f"  text: {message.content!r}")
