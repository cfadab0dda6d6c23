#!/bin/sh
# icl-train over MPI (mpirun -np 2): equal to one process with twice the
# batch, exact resume after an interrupted 2-rank run, one rank's failure or
# signal ends the whole job.  Skipped when icl-train is built without MPI.
. "$(dirname "$0")/lib.sh"
LLAMA="$DATA/model/llama-tiny/model"

if ! command -v mpirun >/dev/null 2>&1 || ! ldd "$ICL_BIN/icl-train" 2>/dev/null | grep -q libmpi; then
	test_skip 'mpirun -np 2 icl-train' 'icl-train built without MPI (no mpicc)'
	test_done
	exit 0
fi
# CI runs as root; --oversubscribe: 2 ranks on however few cores
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# sanitizer builds: Open MPI's own allocations are not ours to chase
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
MPI="mpirun -np 2"

# 24 random examples for llama-tiny (vocab 96), prompt TAB response.
awk 'BEGIN { srand(7); for (e = 0; e < 24; e++) { n = 4 + int(rand() * 10); np = 1 + int(rand() * (n - 2));
	s = ""; for (i = 0; i < n; i++) s = s (i == 0 ? "" : i == np ? "\t" : " ") int(rand() * 96); print s } }' >rand.tok

# close.py A B TOL: the metrics' loss per step within TOL relative (same steps),
# or, for two safetensors files, every F32 value within TOL absolute.
cat >close.py <<'EOF2'
import json, struct, sys
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
if a.endswith(".safetensors"):
    def st(p):
        with open(p, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            h = json.loads(f.read(n)); d = f.read()
        h.pop("__metadata__", None)
        return {k: struct.unpack("<%df" % ((v["data_offsets"][1] - v["data_offsets"][0]) // 4),
                                 d[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items()}
    x, y = st(a), st(b)
    assert set(x) == set(y), sorted(set(x) ^ set(y))
    worst = max(max(abs(p - q) for p, q in zip(x[k], y[k])) for k in x)
    changed = max(max(abs(p) for p in x[k]) for k in x)
    print("max |diff|", worst)
    assert worst <= tol, worst
else:
    x = [json.loads(l) for l in open(a)]; y = [json.loads(l) for l in open(b)]
    assert [r["step"] for r in x] == [r["step"] for r in y], "steps differ"
    worst = max(abs(p["loss"] - q["loss"]) / abs(p["loss"]) for p, q in zip(x, y))
    print(len(x), "steps, max relative loss diff", worst)
    assert worst <= tol, worst
EOF2

A="-q -m $LLAMA --epochs 2 --lr 1e-2 --weight-decay 0.1 --schedule cosine --warmup-steps 2 --threads 1"
test_expect_success '2 ranks x --batch-size 2 == 1 process x --batch-size 4 (loss 1e-6, parameters 1e-5)' '
	icl-train $A --grad-accum 2 --batch-size 4 -o one rand.tok >m.one &&
	$MPI icl-train $A --grad-accum 2 --batch-size 2 -o two rand.tok >m.two 2>err &&
	test $(wc -l <m.two) -eq 6 &&
	python3 close.py m.one m.two 1e-6 &&
	python3 close.py one/model.safetensors two/model.safetensors 1e-5 &&
	! python3 close.py one/model.safetensors $LLAMA/model.safetensors 1e-5
'

test_expect_success 'an epoch end leaving rank 1 without a micro-batch: still the global mean' '
	icl-train $A --batch-size 10 -o one5 rand.tok >m.one5 &&
	$MPI icl-train $A --batch-size 5 -o two5 rand.tok >m.two5 &&
	test $(wc -l <m.two5) -eq 6 &&
	python3 close.py m.one5 m.two5 1e-6 &&
	python3 close.py one5/model.safetensors two5/model.safetensors 1e-5
'

test_expect_success 'packing too' '
	icl-train $A --packing --seq-len 24 --batch-size 4 -o onep rand.tok >m.onep &&
	$MPI icl-train $A --packing --seq-len 24 --batch-size 2 -o twop rand.tok >m.twop &&
	python3 close.py m.onep m.twop 1e-6 &&
	python3 close.py onep/model.safetensors twop/model.safetensors 1e-5
'

test_expect_success '--loss-average examples: the mean over all ranks'"'"' examples (packed, accumulated, a rank left empty)' '
	icl-train $A --loss-average examples --packing --seq-len 24 --grad-accum 2 --batch-size 4 -o onex rand.tok >m.onex &&
	$MPI icl-train $A --loss-average examples --packing --seq-len 24 --grad-accum 2 --batch-size 2 -o twox rand.tok >m.twox &&
	python3 close.py m.onex m.twox 1e-6 &&
	python3 close.py onex/model.safetensors twox/model.safetensors 1e-5 &&
	icl-train $A --packing --seq-len 24 --grad-accum 2 --batch-size 4 -o onet rand.tok >m.onet &&
	! python3 close.py m.onet m.onex 1e-3 2>/dev/null &&
	icl-train $A --loss-average examples --batch-size 10 -o onex5 rand.tok >m.onex5 &&
	$MPI icl-train $A --loss-average examples --batch-size 5 -o twox5 rand.tok >m.twox5 &&
	python3 close.py m.onex5 m.twox5 1e-6 &&
	python3 close.py onex5/model.safetensors twox5/model.safetensors 1e-5
'

# Overlap (ICL_MPI_OVERLAP=1; the default across hosts): each stage's
# gradients all-reduced during the last backward (MPI_Iallreduce per layer);
# ICL_MPI_OVERLAP=0 (the default on one host): one all-reduce after it.  A sum of 2 is the same bits in any chunking: identical runs.
# same_runs DIR_ON DIR_OFF: the same metrics (but tokens_per_s) and the same
# bits in every safetensors file.
same_runs() {
	sed "s/, \"tokens_per_s\": [0-9.]*//" m.$1 >a.$1 && sed "s/, \"tokens_per_s\": [0-9.]*//" m.$2 >a.$2 &&
	test_cmp a.$1 a.$2 && test $(wc -l <a.$1) -ge 4 &&
	n=0 && for f in $1/*.safetensors; do cmp "$f" "$2/${f#$1/}" || return 1; n=$((n + 1)); done && test $n -ge 1
}
# ICL_MPI_BUCKET_MB=0: one all-reduce per stage (layer); the default (4 MiB
# buckets) sends these tiny models in one bucket at the end.
overlap_case() { # NAME ICL-TRAIN-OPTIONS...
	name=$1; shift
	ICL_MPI_OVERLAP=1 ICL_MPI_BUCKET_MB=0 $MPI icl-train "$@" -o $name.on rand.tok >m.$name.on &&
	ICL_MPI_OVERLAP=1 $MPI icl-train "$@" -o $name.bk rand.tok >m.$name.bk &&
	ICL_MPI_OVERLAP=0 $MPI icl-train "$@" -o $name.off rand.tok >m.$name.off &&
	same_runs $name.on $name.off && same_runs $name.bk $name.off
}
test_expect_success 'overlapped all-reduce == one after the backward, bit for bit: full fine-tune, --grad-accum 2' '
	overlap_case full $A --grad-accum 2 --batch-size 2 &&
	! cmp full.on/model.safetensors $LLAMA/model.safetensors
'
test_expect_success 'overlap, bit for bit: full fine-tune with --gradient-checkpointing' '
	overlap_case ckpt $A --grad-accum 2 --batch-size 2 --gradient-checkpointing
'
test_expect_success 'overlap, bit for bit: LoRA (with dropout), with and without --gradient-checkpointing' '
	overlap_case lora $A --grad-accum 2 --batch-size 2 --lora-r 4 --lora-dropout 0.1 &&
	overlap_case lorack $A --grad-accum 2 --batch-size 2 --lora-r 4 --lora-dropout 0.1 --gradient-checkpointing &&
	test -f lora.on/adapter_model.safetensors
'
test_expect_success 'overlap, bit for bit: GPT-2 (tied, position embeddings); a rank without a micro-batch' '
	overlap_case gpt2 $A -m $DATA/model/gpt2-tiny/model --grad-accum 2 --batch-size 2 &&
	overlap_case nomb $A --batch-size 5 --grad-accum 2 &&
	overlap_case nomb1 $A --batch-size 5
'
test_expect_success 'ICL_MPI_OVERLAP (0 or 1), ICL_MPI_BUCKET_MB (MiB); ranks that disagree refuse together' '
	test_must_fail env ICL_MPI_OVERLAP=2 $MPI icl-train $A -o bad rand.tok >m 2>err &&
	test_grep "ICL_MPI_OVERLAP=2: want 0 or 1" err &&
	test_must_fail env ICL_MPI_BUCKET_MB=-1 $MPI icl-train $A -o bad rand.tok >m 2>err &&
	test_grep "rank 0: ICL_MPI_BUCKET_MB=-1: want a whole number of MiB" err &&
	test $(grep -c "want a whole number" err) -eq 1 &&
	test_must_fail timeout 60 mpirun -np 1 icl-train $A -o bad rand.tok : \
		-np 1 env ICL_MPI_OVERLAP=x icl-train $A -o bad rand.tok >m 2>err &&
	test_grep "rank 1: ICL_MPI_OVERLAP=x: want 0 or 1" err &&
	test_must_fail env ICL_MPI_OVERLAP=x icl-train $A -o bad rand.tok >m 2>err &&
	test_grep "^icl-train: ICL_MPI_OVERLAP=x: want 0 or 1" err &&
	test_must_fail timeout 60 mpirun -np 1 icl-train $A -o dis rand.tok : \
		-np 1 env ICL_MPI_OVERLAP=1 icl-train $A -o dis rand.tok >m 2>err &&
	test_grep "rank 0: the processes were given different options" err &&
	test_must_fail timeout 60 mpirun -np 1 icl-train $A -o dis rand.tok : \
		-np 1 env ICL_MPI_BUCKET_MB=0 icl-train $A -o dis rand.tok >m 2>err &&
	test_grep "rank 0: the processes were given different options" err
'

test_expect_success 'rank 0 alone reports; the effective batch is printed' '
	$MPI icl-train -m $LLAMA --batch-size 3 --grad-accum 2 --max-steps 2 --threads 1 -o rep rand.tok >m 2>err &&
	test $(wc -l <m) -eq 2 &&
	test_grep "2 processes x --batch-size 3 x --grad-accum 2 = effective batch 12 sequences" err &&
	test $(grep -c "^icl-train: done" err) -eq 1 &&
	test_grep "gradients all-reduced after the backward" err &&
	test_grep "gradient all-reduce: [0-9.]* MB per step, [0-9.]* s per step on rank 0" err &&
	ICL_MPI_OVERLAP=1 $MPI icl-train -m $LLAMA --batch-size 3 --max-steps 1 --threads 1 -o rep1 rand.tok >m 2>err &&
	test_grep "gradients all-reduced during the backward" err
'

L="-q -m $LLAMA --batch-size 2 --threads 1 --schedule cosine --lr 1e-3 --epochs 100 --save-every 100 --log-every 10"
test_expect_success 'SIGTERM to one rank: every rank stops at one checkpoint (143); --resume with 2 ranks is bit-identical' '
	$MPI icl-train $L -o full rand.tok >m.full &&
	$MPI sh -c "echo \$\$ >pid.\$OMPI_COMM_WORLD_RANK; exec icl-train $L -o part rand.tok" >m.part 2>err &
	pid=$! &&
	i=0; while ! [ $(cat m.part 2>/dev/null | wc -l) -ge 2 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done &&
	kill -TERM $(cat pid.1) &&
	rc=0; wait $pid || rc=$?
	# each check says what it saw: a failure here must name its cause
	test $rc -eq 143 || { echo "mpirun exited $rc, wanted 143:"; cat err; kill -9 $pid 2>/dev/null; false; }
	n=$(grep -c "interrupted at step" err || :)
	test "$n" -eq 1 || { echo "$n \"interrupted at step\" lines, wanted 1:"; cat err; false; }
	ck=$(ls part | grep "^checkpoint-" | sed "s/checkpoint-//" | sort -n | tail -1)
	{ test "$ck" -ge 20 && test "$ck" -lt 600; } || { echo "newest checkpoint \"$ck\", wanted 20..599:"; ls part; cat err; false; }
	$MPI icl-train $L -o part --resume rand.tok >m.rest &&
	cmp full/model.safetensors part/model.safetensors &&
	cmp full/checkpoint-600/optimizer.safetensors part/checkpoint-600/optimizer.safetensors &&
	# the resumed run replays the logged history, then logs the rest: the whole curve
	sed "s/, \"tokens_per_s\": [0-9.]*//" m.full >a &&
	sed "s/, \"tokens_per_s\": [0-9.]*//" m.rest >b &&
	{ test $(wc -l <b) -eq 60 || { echo "the resumed run logged $(wc -l <b) lines, wanted 60:"; diff -u a b | head -40; false; }; } &&
	test_cmp a b
'

# Open MPI 4.1's mpirun does not pass SIGINT on: it sends the ranks SIGTERM
# about a second later (then SIGKILL), and a tiny model trains hundreds of
# steps meanwhile.  So this run is one that cannot end first (600000 steps)
# and saves no periodic checkpoint: the only checkpoint is the stop's own.
C="-q -m $LLAMA --batch-size 2 --threads 1 --lr 1e-3 --epochs 100000 --save-every 1000000 --log-every 10"
test_expect_success 'SIGINT to mpirun (Ctrl-C): the ranks stop at one checkpoint; the job exits non-zero' '
	$MPI icl-train $C -o ctrlc rand.tok >m.c 2>err &
	pid=$! &&
	i=0; while ! [ $(cat m.c 2>/dev/null | wc -l) -ge 2 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done &&
	kill -INT $pid &&
	{ (sleep 120; kill -9 $pid 2>/dev/null) & } && guard=$! &&
	rc=0; wait $pid || rc=$?; kill $guard 2>/dev/null; test $rc -ne 0 && test $rc -ne 137 &&
	test $(grep -c "interrupted at step" err) -eq 1 &&
	step=$(sed -n "s/.*interrupted at step \([0-9]*\);.*/\1/p" err) &&
	test "$step" -ge 20 &&
	test "$(ls ctrlc | grep "^checkpoint-")" = checkpoint-$step &&
	test -f ctrlc/checkpoint-$step/optimizer.safetensors && ! test -f ctrlc/model.safetensors
'

test_expect_success 'a rank given a missing file ends the job, non-zero, within seconds, naming it' '
	start=$(date +%s) &&
	test_must_fail timeout 60 mpirun -np 1 icl-train $L -o miss rand.tok : -np 1 icl-train $L -o miss missing.tok \
		>m 2>err &&
	test $(( $(date +%s) - start )) -lt 30 &&
	test_grep "rank 1: missing.tok: No such file" err
'

test_expect_success 'ranks given different options, or resuming from different checkpoints, refuse together' '
	test_must_fail timeout 60 mpirun -np 1 icl-train $L -o d rand.tok : -np 1 icl-train $L --lr 1 -o d rand.tok \
		>m 2>err &&
	test_grep "rank 0: the processes were given different options" err &&
	mkdir r0 r1 && cp -r full/checkpoint-100 r0/ &&
	test_must_fail timeout 60 mpirun -np 1 icl-train $L -o r0 --resume rand.tok : \
		-np 1 icl-train $L -o r1 --resume rand.tok >m 2>err &&
	test_grep "newest checkpoints in r0 (steps -1 and 100" err
'

test_done
