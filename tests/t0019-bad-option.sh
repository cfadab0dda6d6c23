#!/bin/sh
# A bad option is one line naming it as typed, then the hint to --help, and
# exit 2, the same in every program (icl_getopt, lib/cli.h): getopt's own
# message is not printed beside icl's.
. "$(dirname "$0")/lib.sh"

# bad PROGRAM WANT ARGS...: exit 2, nothing on stdout, stderr exactly
# "PROGRAM: WANT" and the --help hint.
bad() {
	p=$1 want=$2; shift 2
	rc=0; "$@" </dev/null >out 2>err || rc=$?
	test $rc -eq 2 || { echo "exit $rc: $*"; cat err; return 1; }
	test ! -s out || { echo "stdout: $*"; cat out; return 1; }
	printf '%s: %s\nTry '"'"'%s --help'"'"' for more information.\n' "$p" "$want" "$p" >want
	test_cmp want err
}

for p in icl-fmt icl-train icl-gen icl-eval icl-convert; do
	test_expect_success "$p: an unknown long option is one line and the hint" '
		bad $p "unknown option '"'"'--bogus'"'"'" $p --bogus &&
		bad $p "unknown option '"'"'--bogus'"'"'" $p --bogus=1
	'
	test_expect_success "$p: an unknown short option is one line and the hint" '
		bad $p "unknown option '"'"'-Z'"'"'" $p -Z &&
		bad $p "unknown option '"'"'-Z'"'"'" $p --threads=1 -Zh
	'
	test_expect_success "$p: an option without its value is named" '
		bad $p "option '"'"'--threads'"'"' needs a value" $p --threads
	'
done

test_expect_success 'icl-tok: the same, before and after the command' '
	bad icl-tok "unknown option '"'"'--bogus'"'"' (the command comes first: icl-tok encode|decode|train [OPTION]...)" \
		icl-tok --bogus &&
	bad icl-tok "unknown option '"'"'--bogus'"'"'" icl-tok encode --bogus &&
	bad icl-tok "unknown option '"'"'-Z'"'"'" icl-tok decode -Z &&
	bad icl-tok "option '"'"'--threads'"'"' needs a value" icl-tok encode --threads
'

test_expect_success 'a short option without its value is named' '
	bad icl-gen "option '"'"'-m'"'"' needs a value" icl-gen -m &&
	bad icl-tok "option '"'"'-t'"'"' needs a value" icl-tok encode -qt &&
	bad icl-fmt "option '"'"'-T'"'"' needs a value" icl-fmt -T
'

test_expect_success 'a value given to an option that takes none is named' '
	for p in icl-fmt icl-train icl-gen icl-eval; do
		bad $p "option '"'"'--quiet'"'"' takes no value ('"'"'--quiet=3'"'"')" $p --quiet=3 || return 1
	done
'

test_expect_success 'an abbreviation of several options lists them' '
	bad icl-train "ambiguous option '"'"'--lora'"'"' (--lora-r, --lora-alpha, --lora-dropout, --lora-targets)" \
		icl-train --lora 4
'

test_expect_success 'a unique abbreviation still works, as with getopt' '
	icl-fmt --vers >v && test_grep "^icl-fmt (icl)" v
'

test_done
