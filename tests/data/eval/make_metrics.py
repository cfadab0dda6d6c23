#!/usr/bin/env python3
"""Reference values for lib/metrics.c from the reference implementations:
SQuAD v1.1's evaluate script (normalize_answer, exact_match_score, f1_score,
copied below verbatim apart from the v2.0 empty-answer rule that icl adopts),
rouge-score (RougeScorer(["rougeL"]), no stemmer) and sacreBLEU 2.6.0
(corpus_bleu / sentence_bleu, defaults).

Run:  V/bin/pip install sacrebleu==2.6.0 rouge-score
      V/bin/python tests/data/eval/make_metrics.py > tests/data/eval/metrics_ref.json
"""
import collections
import json
import re
import string

import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a


# --- evaluate-v1.1.py ---
def normalize_answer(s):
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    if not prediction_tokens or not ground_truth_tokens:  # SQuAD v2.0's rule
        return float(prediction_tokens == ground_truth_tokens)
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction, ground_truth):
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))
# --- end ---


CASES = [
    ("The Cat!", ["cat"]),
    ("a quick brown fox jumped", ["quick brown fox jumped over dogs"]),  # F1 = 0.8
    ("the cat sat on the mat", ["the cat is on the mat"]),
    ("An apple a day", ["apple   day", "an orange"]),
    ("", [""]),
    ("", ["something"]),
    ("Élan VITAL", ["élan vital"]),
    ("ΟΔΥΣΣΕΥΣ Σ ΣΑΣ", ["οδυσσευς σ σας"]),
    ("İstanbul is big", ["i̇stanbul is big"]),
    ("don't stop-believing_now", ["dont stopbelievingnow"]),
    ("“Curly” quotes — and dashes…", ["curly quotes and dashes"]),
    ("the\u0301 end\u00a0of\u2003the line", ["end of line"]),
    ("théâtre the a-the", ["théâtre athe"]),
    ("Hello, world. Pi is 3.14 and 1,000 items; 5-4=1 &amp; <skipped> x&quot;y", ["hello world pi 3.14"]),
    ("U.S.A. costs $5.00, (approx.) e.g. 10-20%", ["USA costs 5 dollars"]),
    ("Kelvin \u212a and ẞ", ["kelvin k and ß"]),
    ("line one\nline two-\nthree", ["line one line twothree"]),
    ("日本語 テキスト 123", ["日本語 テキスト"]),
    ("the the the", ["the"]),
    ("cat cat dog", ["cat dog dog", "cat cat cat dog"]),
]


def main():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    tok = Tokenizer13a()
    from rouge_score import tokenize
    out = []
    for pred, refs in CASES:
        rl = scorer.score_multi(refs, pred)["rougeL"]
        out.append({
            "pred": pred, "refs": refs,
            "lower": pred.lower(),
            "squad_norm": normalize_answer(pred),
            "em": max(exact_match_score(pred, r) for r in refs),
            "f1": max(f1_score(pred, r) for r in refs),
            "rouge_tokens": tokenize.tokenize(pred, None),
            "rougeL": rl.fmeasure, "rougeL_p": rl.precision, "rougeL_r": rl.recall,
            "tok13a": tok(pred.rstrip()),
            "sentence_bleu": sacrebleu.sentence_bleu(pred, refs).score,
        })
    # corpus BLEU with a variable number of references (None = absent)
    hyps = [p for p, _ in CASES]
    nref = max(len(r) for _, r in CASES)
    streams = [[r[k] if k < len(r) else None for _, r in CASES] for k in range(nref)]
    b = sacrebleu.corpus_bleu(hyps, streams)
    print(json.dumps({"sacrebleu": sacrebleu.__version__, "cases": out,
                      "corpus_bleu": {"score": b.score, "counts": b.counts, "totals": b.totals,
                                      "bp": b.bp, "sys_len": b.sys_len, "ref_len": b.ref_len,
                                      "precisions": b.precisions}},
                     ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
