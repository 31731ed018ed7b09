"""A transformers model.generate call kept on an onrails grammar by a LogitsProcessor."""

import json

import torch

import onrails
from onrails.runtime.hf import OnRailsLogitsProcessor

model = onrails.load_model()
prompt = model.tokenizer.apply_chat_template(
    [{"role": "user", "content": "Give a JSON array of three prime numbers."}], tokenize=False, add_generation_prompt=True
)
ids = torch.tensor([model.encode(prompt)], device=model.device)
processor = OnRailsLogitsProcessor.from_model(model, grammar_root="array")
with torch.inference_mode():
    out = model.model.generate(ids, logits_processor=[processor], do_sample=False, max_new_tokens=24)
text = model.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
print(text)
if out[0, -1].item() in model.vocabulary.eos_token_ids:  # finished within max_new_tokens
    print(json.loads(text))
