#!/bin/sh
# icl-eval --metrics pass@k: HumanEval's canonical solutions all pass, and
# broken or hostile completions each fail inside the bubblewrap sandbox
# without touching anything outside it.
. "$(dirname "$0")/lib.sh"

gzip -dc "$DATA/eval/HumanEval.jsonl.gz" >HumanEval.jsonl

test_expect_success 'HumanEval: the 164 canonical solutions score pass@1 = 1' '
	icl-eval --pred canonical_solution -M pass@1 --threads 2 --timeout 120 --per-record pr HumanEval.jsonl >out &&
	echo "{\"records\":164,\"tasks\":164,\"samples\":164,\"passed\":164,\"pass@1\":1.0,\"skipped\":0}" >want &&
	test_cmp want out &&
	test $(grep -c "\"result\":\"passed\"" pr) -eq 164
'

# a loopback listener on the host, reachable from outside the sandbox
python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
open("port", "w").write(str(s.getsockname()[1])); open("port.ready", "w").close()
s.settimeout(60)
try:
    while True:
        c, _ = s.accept(); c.close()
except Exception:
    pass
' &
LISTENER=$!
i=0; while [ ! -f port.ready ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done

# Hostile completions of HumanEval/2 (truncate_number), each one that would
# pass if its attack worked.  A listener on the host's loopback proves the
# network is cut off, not merely unreachable.
# (the test folder may be under /tmp, hidden by the sandbox's own /tmp: the
# source tree, read-only in the sandbox, is a target too; a source tree
# under /tmp is hidden as well, and the write fails as a missing folder)
HERE=$(pwd)
OUTSIDE="$TESTS_DIR/icl-sandbox-escaped"
rm -f "$OUTSIDE"
python3 - "$HERE" "$OUTSIDE" "$(cat port)" <<\EOF
import json, sys
here, outside, port = sys.argv[1], sys.argv[2], sys.argv[3]
recs = [json.loads(l) for l in open("HumanEval.jsonl")]
t = next(r for r in recs if r["task_id"] == "HumanEval/2")
ok = "    return number % 1.0\n"
bad = {
    "canonical": ok,
    "syntax": "    return number %% 1.0 +\n",
    "wrong": "    return 0.5\n",
    "loop": "    while True:\n        pass\n",
    "system": "    import os\n"
              "    if os.system('echo x > " + here + "/escaped') != 0:\n"
              "        raise SystemExit(1)\n" + ok,
    "write": "    open('" + outside + "', 'w').write('x')\n" + ok,
    "tmp": "    open('/tmp/icl-sandbox-escape', 'w').write('x')\n    import os\n"
           "    assert os.path.exists('" + here + "/HumanEval.jsonl')\n" + ok,
    "forkbomb": "    import os\n    while True:\n        try:\n            os.fork()\n"
                "        except OSError:\n            pass\n",
    "alloc": "    x = bytearray(2 * 1024 ** 3)\n" + ok,
    "network": "    import socket\n    socket.create_connection(('127.0.0.1', " + port +
               "), timeout=2).close()\n" + ok,
}
with open("broken.jsonl", "w") as f:
    for name, code in bad.items():
        r = dict(t, task_id="broken/" + name, completion=code)
        f.write(json.dumps(r) + "\n")
EOF

test_expect_success 'the listener answers outside the sandbox' '
	python3 -c "import socket; socket.create_connection((\"127.0.0.1\", int(open(\"port\").read())), timeout=2).close()"
'

test_expect_success 'broken and hostile completions each fail; only the control passes' '
	rm -f /tmp/icl-sandbox-escape &&
	icl-eval -M pass@1 --threads 2 --timeout 3 --per-record pr broken.jsonl >out &&
	echo "{\"records\":10,\"tasks\":10,\"samples\":10,\"passed\":1,\"pass@1\":0.1,\"skipped\":0}" >want &&
	test_cmp want out &&
	grep "\"task_id\":\"broken/canonical\"" pr | test_grep "\"result\":\"passed\"" - &&
	for n in syntax wrong system write tmp alloc network; do
		grep "\"task_id\":\"broken/$n\"" pr >line &&
		test_grep "\"passed\":false,\"result\":\"failed\"" line || exit 1
	done &&
	for n in loop forkbomb; do
		grep "\"task_id\":\"broken/$n\"" pr >line &&
		test_grep "\"result\":\"timed out\"" line || exit 1
	done &&
	grep "broken/syntax" pr | test_grep "SyntaxError" - &&
	grep "broken/alloc" pr | test_grep "MemoryError" - &&
	grep "broken/write" pr | test_grep "Read-only file system\\|Permission denied\\|No such file or directory" - &&
	grep "broken/network" pr | test_grep "Network is unreachable\\|Connection refused" -
'

kill $LISTENER 2>/dev/null

test_expect_success 'nothing was written outside the sandbox, no process is left' '
	test ! -e escaped && test ! -e "$OUTSIDE" && test ! -e /tmp/icl-sandbox-escape &&
	sleep 1 &&
	! ps -eo args | grep -q "[p]rogram\.py"
'

test_expect_success 'pass@k needs k samples of every task' '
	sed -n 1p HumanEval.jsonl >one.jsonl &&
	{ icl-eval --pred canonical_solution -M pass@1,pass@2 one.jsonl 2>err; test $? -eq 1; } &&
	test_grep "pass@2 needs at least 2 samples of every task; task \"HumanEval/0\" has 1" err
'

test_expect_success 'pass@k estimates over several samples (Chen et al.)' '
	sed -n 1p broken.jsonl >s.jsonl && sed -n 3p broken.jsonl >>s.jsonl &&
	sed -n 1p broken.jsonl >>s.jsonl &&
	sed "s/broken\/[a-z]*/T/" s.jsonl >same.jsonl &&
	icl-eval -M pass@1,pass@2,pass@3 --timeout 5 same.jsonl >out &&
	echo "{\"records\":3,\"tasks\":1,\"samples\":3,\"passed\":2,\"pass@1\":0.666666666666667,\"pass@2\":1.0,\"pass@3\":1.0,\"skipped\":0}" >want &&
	test_cmp want out
'

test_expect_success 'icl-gen samples -> icl-eval pass@k (tiny model: gibberish fails)' '
	mkdir m && cp "$DATA"/model/stories260K/model/* m/ && cp "$DATA/tok/bytelevel-512.json" m/tokenizer.json &&
	grep "HumanEval/\(2\|23\|45\)\"" HumanEval.jsonl >three.jsonl &&
	test $(wc -l <three.jsonl) -eq 3 &&
	icl-gen -m m -n 8 --temperature 1 --num-return-sequences 2 three.jsonl >gen.jsonl &&
	icl-eval -M pass@1,pass@2 --per-record pr gen.jsonl >out &&
	echo "{\"records\":6,\"tasks\":3,\"samples\":6,\"passed\":0,\"pass@1\":0.0,\"pass@2\":0.0,\"skipped\":0}" >want &&
	test_cmp want out &&
	sed -n 2p pr | test_grep "\"task_id\":\"HumanEval/2\",\"sample\":1,\"passed\":false" -
'

test_expect_success 'a missing interpreter is a clear error' '
	{ ICL_PYTHON=/nonexistent/python3 icl-eval --pred canonical_solution -M pass@1 one.jsonl 2>err; test $? -eq 1; } &&
	test_grep "python3" err
'

test_expect_success 'a record without test or entry_point is named' '
	echo "{\"task_id\":\"x\",\"prompt\":\"\",\"completion\":\"pass\"}" >nt.jsonl &&
	{ icl-eval -M pass@1 nt.jsonl 2>err; test $? -eq 1; } &&
	test_grep "nt.jsonl:1: no \"test\" key" err
'

test_done
