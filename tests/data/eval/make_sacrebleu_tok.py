#!/usr/bin/env python3
"""Reference values for icl's BLEU under every sacreBLEU tokenizer icl has
(13a, intl, zh, char, none) and for chrF / chrF++, from sacreBLEU 2.6.0
itself, on English, Chinese, Japanese, Korean and Thai pairs (some with two
references, some with hard cases: full-width punctuation, numbers with
separators, symbols, U+2014 which zh's quirky ranges split, empty lines).

Run:  /work/ref/venv/bin/python tests/data/eval/make_sacrebleu_tok.py \
          > tests/data/eval/sacrebleu_tok.json
Also writes tests/data/eval/sacrebleu_tok.jsonl (the pairs as icl-eval
records: "completion", "response" = list of references).
"""
import json
import os
import sys

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

PAIRS = [
    # English
    ("The cat sat on the mat.", ["The cat is sitting on the mat.", "A cat sat on a mat."]),
    ("He paid $1,000.50 for 3-4 items (approx.)!", ["He paid $1,000.50 for three items."]),
    ("Don't stop -- it's 5.30pm; e-mail me @home #1.", ["Do not stop: it is 5.30 pm. Email me at home."]),
    ("hello there general kenobi", ["hello there general kenobi"]),
    ("", ["nothing here"]),
    ("A quick brown fox jumps over the lazy dog", ["The quick brown fox jumped over the lazy dogs"]),
    # Chinese
    ("我喜欢吃苹果。", ["我爱吃苹果。", "我喜欢苹果。"]),
    ("今天天气很好，我们去公园散步吧！", ["今天天气不错，我们去公园散步吧。"]),
    ("北京是中国的首都，人口约2,100万。", ["北京是中国的首都，有大约2100万人口。"]),
    ("正面", ["正面"]),
    ("他说：“你好—世界”", ["他说：「你好，世界」"]),
    ("GPT-4模型在2023年发布", ["GPT-4 模型于 2023 年发布"]),
    # Japanese
    ("私は学生です。", ["私は学生です。"]),
    ("東京は日本の首都です。", ["日本の首都は東京です。"]),
    ("きょうはいいてんきですね", ["今日はいい天気ですね"]),
    ("ｶﾀｶﾅとカタカナ、ＡＢＣ１２３", ["カタカナとｶﾀｶﾅ、ABC123"]),
    # Korean and Thai
    ("안녕하세요 세계", ["안녕하세요 세계"]),
    ("저는 학생입니다.", ["나는 학생이다."]),
    ("สวัสดีครับ", ["สวัสดีครับ"]),
    ("ฉันชอบกินข้าวผัด", ["ฉันชอบกินข้าว"]),
]

TOKS = ["13a", "intl", "zh", "char", "none"]


def bleu_detail(s):
    return {"score": s.score, "counts": list(s.counts), "totals": list(s.totals),
            "bp": s.bp, "sys_len": s.sys_len, "ref_len": s.ref_len}


def main():
    hyps = [h for h, _ in PAIRS]
    nref = max(len(r) for _, r in PAIRS)
    # sacreBLEU's corpus API takes reference streams; None pads missing ones
    streams = [[r[i] if i < len(r) else None for _, r in PAIRS] for i in range(nref)]
    out = {"sacrebleu_version": sacrebleu.__version__, "pairs": [{"hyp": h, "refs": r} for h, r in PAIRS]}
    out["tokens"] = {}
    out["bleu"] = {}
    for t in TOKS:
        b = BLEU(tokenize=t)
        bs = BLEU(tokenize=t, effective_order=True)
        out["tokens"][t] = [b._preprocess_segment(h) for h in hyps]
        corpus = b.corpus_score(hyps, streams)
        out["bleu"][t] = {"corpus": bleu_detail(corpus), "signature": str(b.get_signature()),
                          "sentence": [bs.sentence_score(h, r).score for h, r in PAIRS]}
    out["chrf"] = {}
    for name, wo in (("chrf", 0), ("chrf++", 2)):
        c = CHRF(word_order=wo)
        out["chrf"][name] = {"corpus": c.corpus_score(hyps, streams).score,
                             "signature": str(c.get_signature()),
                             "sentence": [c.sentence_score(h, r).score for h, r in PAIRS]}
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "sacrebleu_tok.jsonl"), "w", encoding="utf-8") as f:
        for i, (h, r) in enumerate(PAIRS):
            f.write(json.dumps({"id": i, "completion": h, "response": r}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
