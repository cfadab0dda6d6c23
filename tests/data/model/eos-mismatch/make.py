# Makes the eos-mismatch fixture: the tokenizer files of a chat model folder
# whose tokenizer_config.json names one EOS (<|im_start|>, id 512, as the
# tokenizer_config.json of the issue-18 SmolLM2 folder did) while
# generation_config.json names another (<|im_end|>, id 513: what generation
# stops at).  tokenizer.json: tests/data/tok/bytelevel-512.json plus the two
# added tokens.  Run from the repository root:
#   python3 tests/data/model/eos-mismatch/make.py
import json

d = json.load(open("tests/data/tok/bytelevel-512.json"))
for i, t in ((512, "<|im_start|>"), (513, "<|im_end|>")):
    d["added_tokens"].append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": True})
out = "tests/data/model/eos-mismatch/"
json.dump(d, open(out + "tokenizer.json", "w"), ensure_ascii=False)
json.dump({"bos_token": None, "eos_token": "<|im_start|>", "pad_token": "<|endoftext|>", "add_bos_token": False},
          open(out + "tokenizer_config.json", "w"), indent=2)
json.dump({"bos_token_id": 0, "eos_token_id": [513], "pad_token_id": 0}, open(out + "generation_config.json", "w"),
          indent=2)
