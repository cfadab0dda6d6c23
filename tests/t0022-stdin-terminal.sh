#!/bin/sh
# A program that will read standard input (no FILE, or "-") while it is a
# terminal says so once on stderr, so that waiting for typed input is not
# taken for a hang (new-user trial); never when standard input is a pipe or
# a file, nor with -q.  The terminal is util-linux's script(1).
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"
NOTICE='reading standard input (end with Ctrl-D; --help for usage)'
printf '{"instruction":"Say hi","output":"hi"}\n' >i.jsonl
printf '{"prompt":"Hello","response":" world"}\n' >r.jsonl
gzip -dc "$DATA/tok/gpt2.json.gz" >gpt2.json

# at_tty CMD: run sh -c CMD with standard input, output and error on a
# terminal that gets end-of-file (^D) after a second; CMD redirects what it
# wants to check.  A ^D typed before the program reads still ends its input
# (the terminal queues it).
# With EOFS=2, a second ^D half a second after the first (a program that
# reads standard input twice: a terminal's end-of-file is not sticky).
at_tty() {
	rm -f tty.in && mkfifo tty.in &&
	{ (sleep 1; printf '\004'; [ "${EOFS:-1}" = 1 ] || { sleep 0.5; printf '\004'; }; exec sleep 60) >tty.in & } &&
	feeder=$! &&
	_rc=0 && timeout 60 script -qec "$1" /dev/null <tty.in >tty.out 2>&1 || _rc=$?
	kill "$feeder" 2>/dev/null
	return $_rc
}

if command -v script >/dev/null 2>&1 && command -v mkfifo >/dev/null 2>&1 &&
	script -qec true /dev/null </dev/null >/dev/null 2>&1; then
test_expect_success 'icl-fmt at a terminal says it reads standard input, once' '
	at_tty "icl-fmt 2>err >out; true" &&
	test_grep "^icl-fmt: $NOTICE" err && test "$(grep -c "$NOTICE" err)" = 1
'

test_expect_success 'icl-tok encode and decode, icl-eval: the same notice' '
	at_tty "icl-tok encode -t gpt2.json 2>err >out" &&
	printf "icl-tok: %s\nicl-tok: <stdin>: empty input, no records\n" "$NOTICE" >want && test_cmp want err &&
	at_tty "icl-tok decode -t gpt2.json - 2>err >out" &&
	echo "icl-tok: $NOTICE" >want && test_cmp want err &&
	at_tty "icl-eval 2>err >out; true" &&
	test_grep "^icl-eval: $NOTICE" err && test "$(grep -c "$NOTICE" err)" = 1
'

test_expect_success 'icl-gen --ids and icl-train, after loading the model: the notice' '
	at_tty "icl-gen -m \"$LLAMA\" --ids --no-progress 2>err >out" &&
	test_grep "^icl-gen: $NOTICE" err && test "$(grep -c "$NOTICE" err)" = 1 &&
	at_tty "icl-train -m \"$LLAMA\" -o run --max-steps 1 2>err >out; true" &&
	test_grep "^icl-train: $NOTICE" err
'

test_expect_success 'standard input read twice (icl-fmt - -): said once; the chat'"'"'s own banner only' '
	EOFS=2 at_tty "icl-fmt - - 2>err >out; true" &&
	test "$(grep -c "$NOTICE" err)" = 1 && test "$(grep -c "empty input" err)" = 2 && test_cmp /dev/null out &&
	at_tty "icl-tok encode -t - - 2>err >out; true" &&
	test "$(grep -c "$NOTICE" err)" = 1 && test_cmp /dev/null out &&
	mkdir c && cp "$DATA"/model/stories260K/model/* c/ && cp "$DATA/tok/bytelevel-512.json" c/tokenizer.json &&
	printf "%s" "{% for m in messages %}{{ m.content }}{% endfor %}" >c/chat_template.jinja &&
	at_tty "icl-gen -m c --chat 2>err >out" && test_cmp /dev/null out &&
	test_grep "^icl-gen: chatting with c" err && ! grep -F "$NOTICE" err &&
	at_tty "icl-gen -q -m c --chat 2>err >out" && test_cmp /dev/null out && ! grep -F "chatting" err
'

test_expect_success 'no notice with -q, with a FILE, or with standard input from a file' '
	at_tty "icl-fmt -q 2>err >out" && test_cmp /dev/null err &&
	at_tty "icl-tok encode -q -t gpt2.json 2>err >out" && test_cmp /dev/null err &&
	at_tty "icl-fmt i.jsonl 2>err >out" && test_cmp /dev/null err &&
	at_tty "icl-fmt <i.jsonl 2>err >out" && test_cmp /dev/null err && test_grep "Say hi" out &&
	at_tty "icl-tok encode -t gpt2.json <r.jsonl 2>err >out" && test_cmp /dev/null err
'
else
test_skip 'the notice at a terminal' 'no script(1) or mkfifo, or no terminal to open'
fi

test_expect_success 'no notice when standard input is a pipe' '
	icl-fmt <i.jsonl 2>err >out && test_cmp /dev/null err &&
	cat i.jsonl | icl-fmt 2>err >out && test_cmp /dev/null err &&
	icl-fmt <i.jsonl | icl-tok encode -t gpt2.json 2>err >out && test_cmp /dev/null err &&
	cat r.jsonl | icl-tok encode -t gpt2.json | icl-tok decode -t gpt2.json 2>err >out &&
	test_cmp /dev/null err && test_cmp r.jsonl out
'

test_done
