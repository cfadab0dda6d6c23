"""Compare icl-tok train with HF BpeTrainer on any corpus (not run by make check):
    bin/icl-tok train --vocab-size N --special "<|endoftext|>" -o ours.json corpus.txt
    VENV/bin/python tests/data/tok/extra/check_train_vs_hf.py corpus.txt N ours.json
Measured: tinyshakespeare+wiki_demo+c4_demo twice (5.8 MB) at 8000 and 30000: all merges equal."""
import json, sys, time
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
corpus, vs, ours = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tr = trainers.BpeTrainer(vocab_size=vs, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
t0 = time.time(); tok.train([corpus], tr); dt = time.time() - t0
ref = json.loads(tok.to_str())["model"]["merges"]
o = json.load(open(ours))["model"]["merges"]
same = sum(a == b for a, b in zip(ref, o))
first = next((i for i, (a, b) in enumerate(zip(ref, o)) if a != b), None)
print(vs, "HF merges", len(ref), "ours", len(o), "equal in order", same, "first diff", first, "HF time %.2f s" % dt)
