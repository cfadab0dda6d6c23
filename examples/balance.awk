# balance.awk - a task's training records (JSON Lines with a "label") with
# each less frequent label's records repeated, in their order and cycling,
# until every label has as many records as the most frequent one (random
# oversampling of the minority classes: the tuned model then sees no prior
# for the majority class).  Prints the input, then the added records.
{
    line[NR] = $0
    if (!match($0, /"label": *"[^"]*"/)) { print FILENAME ":" NR ": no \"label\"" > "/dev/stderr"; bad = 1; exit 1 }
    l = substr($0, RSTART, RLENGTH); sub(/^"label": *"/, "", l); sub(/"$/, "", l)
    if (!(l in n)) order[++nl] = l
    rec[l, ++n[l]] = NR
    print
}
END {
    if (bad) exit 1
    max = 0
    for (i = 1; i <= nl; i++) if (n[order[i]] > max) max = n[order[i]]
    for (i = 1; i <= nl; i++) {
        l = order[i]
        for (k = n[l]; k < max; k++) print line[rec[l, k % n[l] + 1]]
    }
}
