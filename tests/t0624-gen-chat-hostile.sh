#!/bin/sh
# icl-gen --chat given hostile input: CRLF line ends, NUL bytes, bytes not
# UTF-8, a template that raises on a later turn or refuses --system, a
# closed standard output, hundreds of turns (the oldest exchanges dropped
# again and again: each turn still the record mode's reply on the kept
# history).  stories260K with bytelevel-512 and a small template (as t0623).
. "$(dirname "$0")/lib.sh"
mkdir m && cp "$DATA"/model/stories260K/model/* m/ && cp "$DATA/tok/bytelevel-512.json" m/tokenizer.json
mkdir c && cp m/* c/ &&
printf '%s' '{% for m in messages %}[{{ m.role }}] {{ m.content }}
{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}' >c/chat_template.jinja

test_expect_success 'CRLF line ends: the CR is not part of the message' '
	printf "Once upon a time\nThe dog\n" | icl-gen -m c -n 12 --greedy --chat >want &&
	printf "Once upon a time\r\nThe dog\r\n" | icl-gen -m c -n 12 --greedy --chat >got 2>err &&
	test_cmp want got && test ! -s err
'

test_expect_success 'a line with a NUL byte is refused as a record'"'"'s \u0000 is; the next line is answered alone; status 1' '
	printf "The dog\n" | icl-gen -m c -n 12 --greedy --chat >want &&
	rc=0; printf "Once\000upon\n/exit\000x\nThe dog\n" | icl-gen -m c -n 12 --greedy --chat >got 2>err || rc=$?
	test $rc -eq 1 && test_cmp want got &&
	grep -F "<stdin>:1: the message holds a NUL byte: not sent" err &&
	grep -F "<stdin>:2: the message holds a NUL byte: not sent" err
'

test_expect_success 'a line not UTF-8 is refused; the next line is answered alone; status 1' '
	printf "The dog\n" | icl-gen -m c -n 12 --greedy --chat >want &&
	rc=0; printf "Once \377\376 upon\nThe dog\n" | icl-gen -m c -n 12 --greedy --chat >got 2>err || rc=$?
	test $rc -eq 1 && test_cmp want got &&
	grep -F "<stdin>:1: the message is not UTF-8 text: not sent" err
'

test_expect_success 'a template raising on turn 2: said with its file and line, not sent; /reset starts again' '
	printf "%s" "{% if messages|length > 1 %}{{ raise_exception(\"Roles must alternate\") }}{% endif %}{% for m in messages %}[{{ m.role }}] {{ m.content }}
{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}" >raise2.jinja &&
	printf "Once\n" | icl-gen -m c --chat-template raise2.jinja -n 12 --greedy --chat >r1 &&
	cat r1 r1 >want &&
	rc=0; printf "Once\nupon\n/reset\nOnce\n" | icl-gen -m c --chat-template raise2.jinja -n 12 --greedy --chat >got 2>err || rc=$?
	test $rc -eq 1 && test_cmp want got &&
	grep -F "<stdin>:2: raise2.jinja:1: Roles must alternate: not sent" err
'

test_expect_success '--system with a template refusing a system message: said once, before any turn; status 1' '
	printf "%s" "{% for m in messages %}{% if m.role == \"system\" %}{{ raise_exception(\"System role not supported\") }}{% endif %}[{{ m.role }}] {{ m.content }}
{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}" >nosys.jinja &&
	rc=0; printf "Once\nupon\n" | icl-gen -m c --chat-template nosys.jinja -n 12 --greedy --chat --system "Be nice" >got 2>err || rc=$?
	test $rc -eq 1 && test ! -s got &&
	test $(wc -l <err) -eq 1 &&
	grep -F -- "--system: the chat template refuses a system message (nosys.jinja:1: System role not supported)" err &&
	printf "Once\n" | icl-gen -m c --chat-template nosys.jinja -n 12 --greedy --chat >got && test -s got
'

test_expect_success 'standard output closed (| head -1): the chat ends, no hang' '
	yes "Once upon" | head -2000 >many &&
	rc=0; (timeout 60 icl-gen -m c -n 12 --greedy --chat <many; echo $? >rc) | head -1 >got &&
	test -s got && test "$(cat rc)" -eq 141
'

# 300 turns with replies of 40 tokens in a context of 512: exchanges
# dropped on most turns.  The history each turn saw is rebuilt from the
# replies and the drops said on stderr; late turns are the record mode's
# reply on it (the KV cache reused across drops stays exact).
test_expect_success '300 turns: the drops said, late turns the record mode on the kept history' '
	python3 -c "
import random
random.seed(1)
w=\"the dog cat ran park sun tree bird little big happy sad\".split()
for i in range(300): print(\" \".join(random.choice(w) for _ in range(random.randint(1,30))))" >turns &&
	icl-gen -m c -n 40 --greedy --chat <turns >out 2>err &&
	test $(grep -c "dropped the" err) -gt 200 &&
	python3 -c "
import json, re, subprocess
users = open(\"turns\").read().split(\"\n\")[:300]
replies = open(\"out\", encoding=\"utf-8\", newline=\"\").read().split(\"\n\")[:300]
drops = {}
for l in open(\"err\"):
    m = re.search(r\"<stdin>:(\d+): .*dropped the (\d+) oldest\", l)
    if m: drops[int(m.group(1))] = int(m.group(2))
hist = []
for i in range(300):
    hist = hist[2 * drops.get(i + 1, 0):]
    msgs = hist + [{\"role\": \"user\", \"content\": users[i]}]
    if i in (150, 297, 298, 299):
        r = subprocess.run([\"icl-gen\", \"-q\", \"-m\", \"c\", \"-n\", \"40\", \"--greedy\", \"--stream\"],
                           input=(json.dumps({\"messages\": msgs}) + \"\n\").encode(), capture_output=True, check=True)
        want = r.stdout.decode().split(\"\n\")[0]
        assert want == replies[i], (i, want, replies[i])
    hist = msgs + [{\"role\": \"assistant\", \"content\": replies[i]}]
"
'

# a line without end (/dev/zero): getline grew until memory ran out, then
# the chat ended with status 0 and nothing said
test_expect_success 'an endless line (/dev/zero) is an error at 16 MiB, not all the memory' '
	python3 -c "
import resource, subprocess
r = subprocess.run([\"timeout\", \"60\", \"icl-gen\", \"-m\", \"c\", \"-n\", \"4\", \"--chat\"],
                   stdin=open(\"/dev/zero\"), capture_output=True, text=True)
assert r.returncode == 1, r
assert r.stderr == \"icl-gen: <stdin>:1: a line longer than 16 MiB: not a chat message\n\", r.stderr
kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
assert kb < 400000, kb
" &&
	head -c 3000000 /dev/zero | tr "\000" a >long && echo >>long && echo "The dog" >>long &&
	printf "The dog\n" | icl-gen -m c -n 12 --greedy --chat >want &&
	rc=0; icl-gen -m c -n 12 --greedy --chat <long >got 2>err || rc=$?
	test $rc -eq 1 && test_cmp want got && grep -F "<stdin>:1: the message has" err
'

test_done
