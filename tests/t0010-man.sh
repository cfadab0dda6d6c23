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

test_done
