#!/bin/sh
# Every manual page renders with man(1) without a single groff warning, and
# every program has one whose NAME line names it.
. "$(dirname "$0")/lib.sh"
MANDIR="$TESTS_DIR/../man"

for page in "$MANDIR"/man1/*.1 "$MANDIR"/man7/*.7; do
    name=$(basename "$page")
    test_expect_success "$name renders without warnings" '
        MANWIDTH=80 man --warnings -l "$page" >page 2>warnings &&
        test ! -s warnings || { cat warnings; false; }
        test_grep "^NAME" page
    '
done

for prog in "$ICL_BIN"/icl-*; do
    p=$(basename "$prog")
    test_expect_success "$p has a manual page naming it" '
        test -f "$MANDIR/man1/$p.1" &&
        MANWIDTH=80 man -l "$MANDIR/man1/$p.1" 2>/dev/null | sed -n "/^NAME/,/^\$/p" >name &&
        test_grep "$p" name
    '
    # The page is kept in step with --help: every long option --help teaches
    # is documented (roff writes a hyphen as \-).
    test_expect_success "$p(1) documents every long option of --help" '
        "$prog" --help | grep -o -- "--[a-z][a-z0-9-]*" | sort -u >opts &&
        test $(wc -l <opts) -ge 3 &&
        sed "s/\\\\-/-/g" "$MANDIR/man1/$p.1" >man.txt &&
        while read o; do
            grep -q -F -- "$o" man.txt || { echo "$p.1 lacks $o"; exit 1; }
        done <opts
    '
done

# Options that take one of a few values: each value the refusal of a bad
# one lists ("want A, B or C", "not one of A, B, C") is named in the
# option's own --help entry and in its entry of the man page, synonyms
# included.
# the --help entry of option $2 of program $1: its line and the deeper-
# indented lines after it
help_entry() {
	"$1" --help | awk -v o="$2" '
		on && /^        / { print; next }
		{ on = 0 }
		index($0, o) && $0 ~ "^ *(-[a-zA-Z], )?" o "([ =]|$)" { on = 1; print }'
}
# the man page entry (.TP tag naming the option, up to the next .TP/.SH/.SS)
man_entry() {
	sed 's/\\-/-/g; s/\\f[BIRP]//g' "$MANDIR/man1/$1.1" | awk -v o="$2" '
		/^\.(TP|SH|SS)/ { on = 0; tp = ($0 ~ /^\.TP/); next }
		tp && index($0, o) && $0 ~ o "([^-a-z]|$)" { on = 1 }
		{ tp = 0 }
		on'
}
has_word() { grep -q -E -- "(^|[^-[:alnum:]_])$1(\$|[^-[:alnum:]_])" "$2"; }
choices() { # program, option, then the words of a command line refusing BOGUS
	prog=$1 opt=$2; shift 2; cmd="$*"
	test_expect_success "$prog $opt: every accepted value is in --help and $prog(1)" '
		rc=0; $cmd </dev/null >/dev/null 2>err || rc=$?
		test $rc -eq 2 &&
		sed -n "1s/.*\\(want\\|not one of\\) //p" err | sed "s/,* or /, /; s/, /\\n/g" >values &&
		test $(wc -l <values) -ge 2 &&
		help_entry $prog $opt >help && test -s help &&
		man_entry $prog $opt >man && test -s man &&
		while read v; do
			has_word "$v" help || { echo "--help of $opt lacks $v:"; cat help; exit 1; }
			has_word "$v" man || { echo "$prog.1 at $opt lacks $v:"; cat man; exit 1; }
		done <values
	'
}
choices icl-train --dtype icl-train --dtype BOGUS
choices icl-train --loss-average icl-train --loss-average BOGUS
choices icl-train --schedule icl-train --schedule BOGUS
choices icl-train --save-gguf icl-train --save-gguf BOGUS
choices icl-gen --dtype icl-gen --dtype BOGUS
choices icl-eval --dtype icl-eval --dtype BOGUS
choices icl-eval --tokenize icl-eval --tokenize BOGUS
choices icl-fmt --on-error icl-fmt --on-error BOGUS
choices icl-fmt --shot-selection icl-fmt --shot-selection BOGUS
choices icl-tok --on-error icl-tok encode --on-error BOGUS
choices icl-convert --type icl-convert --type BOGUS

test_done
