# questions.awk - held-out identity questions that are not training questions:
# awk -f questions.awk TRAIN... HELD_OUT prints the records of HELD_OUT
# (JSON Lines, "prompt" first) whose question, lower-cased and without
# spaces and punctuation (ASCII and the full-width ，。？！、：；), is not
# the question of a record of a TRAIN file.  identity_template.json asks
# some questions twice ("你好") or nearly ("你是谁" / "你是谁？"): a split
# of the records would hold out questions that are also trained on.
function question(s) {
    if (!match(s, /^\{"prompt":"([^"\\]|\\.)*"/)) {
        print FILENAME ":" FNR ": no \"prompt\" first" > "/dev/stderr"; bad = 1; exit 1
    }
    s = tolower(substr(s, 12, RLENGTH - 12))
    gsub(/[[:space:][:punct:]]/, "", s)
    gsub(/，|。|？|！|、|：|；/, "", s)
    return s
}
FILENAME != ARGV[ARGC - 1] { seen[question($0)] = 1; next }
!(question($0) in seen)
END { if (bad) exit 1 }
