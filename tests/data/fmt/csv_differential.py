#!/usr/bin/env python3
"""Differential test of icl-fmt's CSV reading against Python's csv module.

usage: csv_differential.py SEED FILES MAXROWS TMPDIR [tsv]
Writes FILES random CSV (or, with "tsv", TSV) files (quoted and unquoted fields with commas,
quotes, LF, CRLF, lone CR, TABs, spaces, non-ASCII; blank lines; LF or CRLF
row ends; with or without a final newline), converts each with
`icl-fmt -q -T raw.tpl` (prompt = instruction, response = output) and checks
that every record equals what csv.reader yields, field for field, and that
each row's line (taken from a deliberately ragged last row) is the physical
line Python's reader says the row starts on.  Exit 1 on any difference.
"""
import csv, io, json, os, random, subprocess, sys

seed, files, maxrows, tmp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tsv = len(sys.argv) > 5 and sys.argv[5] == 'tsv'
D = '\t' if tsv else ','
special = '\n"\r' + D
random.seed(seed)
tpl = os.path.join(tmp, 'raw.tpl')
with open(tpl, 'w') as f:
    f.write('{instruction}\n%%\n{output}\n')
ATOMS = ['x', 'y', ' ', '\t', '\n', '"', '\r\n', '\r', ',', '\u00e9', '\U0001f600']
bad = 0
for t in range(files):
    parts = [D.join(['instruction', 'output', 'extra']) + '\n']
    for i in range(random.randint(0, maxrows)):
        fields = []
        for k in range(3):
            s = ''.join(random.choice(ATOMS) for _ in range(random.randint(0, random.choice([5, 50, 500]))))
            if any(ch in s for ch in special) or s == '' or random.random() < 0.3:
                s = '"' + s.replace('"', '""') + '"'
            fields.append(s)
        parts.append(D.join(fields) + random.choice(['\n', '\r\n', '\n\n', '\r\n\r\n']))
    data = ''.join(parts)
    ragged = random.random() < 0.5
    if ragged:
        data += D.join('abcd') + '\n'
    elif random.random() < 0.5:
        data = data.rstrip('\n').rstrip('\r') if data.endswith('\n') else data
    path = os.path.join(tmp, 'd%d.csv' % t)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        f.write(data)
    r = csv.reader(io.StringIO(data, newline=''), delimiter=D)
    want, prev, ragged_line = [], 0, None
    for row in r:
        if len(row) == 4:
            ragged_line = prev + 1
        elif row and r.line_num > 1:
            want.append(row)
        prev = r.line_num
    want = [w for w in want if w[1].strip(' \t\n\r\v\f') != '']  # empty or whitespace-only output: dropped
    p = subprocess.run(['icl-fmt', '-q', '-T', tpl] + (['-f', 'tsv'] if tsv else []) + [path],
                       capture_output=True)
    got = [json.loads(l) for l in p.stdout.decode('utf-8').splitlines()]
    got = [[g['prompt'], g['response'], g['extra']] for g in got]
    ok = got == want
    if ragged:
        # Python counts a lone CR as a line end too; compare only without one.
        exp_err = 'icl-fmt: %s:%d: row has 4 fields, the header has 3\n' % (path, ragged_line)
        ok = ok and p.returncode == 1 and ('\r' in data.replace('\r\n', '') or p.stderr.decode() == exp_err)
    else:
        ok = ok and p.returncode == 0
    if not ok:
        bad += 1
        print('difference in', path, 'exit', p.returncode, p.stderr.decode()[:300])
print('%d files, %d differences' % (files, bad))
sys.exit(1 if bad else 0)
