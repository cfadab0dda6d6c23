# eos.awk - count the generations that ended with the EOS id.
# Input: icl-gen --ids output (token lines: the prompt's segments, then TAB
# and the generated ids, the EOS included when decoding stopped on it).
# Output: one JSON line.  Usage: awk -v eos=ID -f eos.awk
BEGIN { FS = "\t" }
/^#/ { next }
{
    n++
    k = split($NF, ids, " ")
    new += k
    if (k > 0 && ids[k] == eos) stopped++
}
END {
    if (n == 0) { print "eos.awk: no generations" > "/dev/stderr"; exit 1 }
    printf "{\"prompts\":%d,\"eos\":%d,\"eos_rate\":%.4f,\"mean_new_tokens\":%.1f}\n", n, stopped, stopped / n, new / n
}
