# metrics.awk - icl-train's metrics JSON lines -> "step loss val_loss" columns
# for gnuplot ("?" where a value is missing).  -v offset=N shifts the steps.
function val(key,    m) {
    if (match($0, "\"" key "\": *[-+0-9.eEnaif]+")) {
        m = substr($0, RSTART, RLENGTH); sub(/^[^:]*: */, "", m); return m
    }
    return "?"
}
{ s = val("step"); if (s == "?") next; printf "%d\t%s\t%s\n", s + offset, val("loss"), val("val_loss") }
