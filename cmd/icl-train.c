/* icl-train - train or fine-tune a causal LM on token lines.  See icl-train(1). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fileio.h"
#include "common/adapt.h"
#include "dp/dp.h"
#include "gguf.h"
#include "gguf_model.h"
#include "lora.h"
#include "tokgguf.h"
#include "trainer.h"
#include "util.h"

static const char usage_text[] =
    "Usage: icl-train (-m MODEL_DIR | --arch llama|qwen2|gpt2 [size options] -t TOKENIZER)\n"
    "                 -o OUT_DIR [options] [FILE...]\n"
    "\n"
    "Trains on token lines (from icl-tok encode; FILE... or standard input).\n"
    "Only target segments (responses and their EOS) count in the loss, the mean\n"
    "over all target tokens of each optimizer step.  Writes one JSON object per\n"
    "logged step on standard output:\n"
    "  {\"step\", \"epoch\", \"loss\", \"lr\", \"grad_norm\" (before clipping),\n"
    "   \"tokens_per_s\", \"val_loss\" (when measured)}\n"
    "and a progress bar on standard error when it is a terminal.\n"
    "\n"
    "Model:\n"
    "  -m, --model DIR            Hugging Face model folder or GGUF file to\n"
    "                             fine-tune (with LoRA a quantized GGUF stays in\n"
    "                             its blocks: QLoRA, see --dequantize)\n"
    "      --arch NAME            from scratch: llama, qwen2 or gpt2, randomly\n"
    "                             initialised from --seed (std 0.02)\n"
    "      --hidden-size N  --num-hidden-layers N  --num-attention-heads N\n"
    "      --num-key-value-heads N  --intermediate-size N\n"
    "                             sizes from scratch (defaults: transformers')\n"
    "  -t, --tokenizer PATH       with --arch: tokenizer.json (or its folder): the\n"
    "                             vocabulary size and special ids; copied into\n"
    "                             OUT_DIR so it is a complete model folder\n"
    "  -o, --output-dir DIR       checkpoints DIR/checkpoint-STEP/; the final model\n"
    "                             (DIR is made if missing; its parent must exist)\n"
    "      --save-gguf TYPE       also write the final model as DIR/model.gguf for\n"
    "                             llama.cpp: F32, F16, BF16, Q8_0, Q4_0 or Q4_1 (with\n"
    "                             LoRA: the base with the adapter merged; Q4_0/Q4_1\n"
    "                             keep the output head in Q8_0, as icl-convert)\n"
    "\n"
    "LoRA (names as PEFT's LoraConfig; the base is frozen, checkpoints and DIR\n"
    "hold a PEFT adapter folder: adapter_config.json, adapter_model.safetensors):\n"
    "      --lora-r R             train rank-R adapters instead of every weight\n"
    "      --lora-alpha A         scale alpha / r (default 8)\n"
    "      --lora-dropout P       dropout on the adapters' input during training\n"
    "                             (PEFT's lora_dropout; masks drawn from --seed, the\n"
    "                             step and the position: resume stays exact;\n"
    "                             default 0, with --adapter its lora_dropout)\n"
    "      --lora-targets LIST    modules: comma list of q_proj,k_proj,v_proj,o_proj,\n"
    "                             gate_proj,up_proj,down_proj (GPT-2: c_attn,c_proj,\n"
    "                             c_fc) or all-linear (default: q_proj,v_proj;\n"
    "                             GPT-2 c_attn, as PEFT); a whole name selects one\n"
    "                             module: model.layers.0.self_attn.q_proj\n"
    "      --use-rslora           scale alpha / sqrt(r) (rsLoRA)\n"
    "      --adapter DIR          start from the PEFT adapter folder DIR (its r,\n"
    "                             lora_alpha, target_modules, use_rslora and,\n"
    "                             unless --lora-dropout is given, lora_dropout)\n"
    "      --dequantize           with a quantized GGUF base: dequantize it to\n"
    "                             float32 (default: QLoRA, its Q8_0/Q4_0/Q4_1/Q4_K/\n"
    "                             Q5_K/Q6_K... matrices stay in their blocks)\n"
    "\n"
    "Data:\n"
    "      --batch-size N         examples (rows) per micro-batch (default 8)\n"
    "      --seq-len N            longest example: longer ones lose tokens from\n"
    "                             the left, their prompt's start or earlier turns\n"
    "                             (with those turns' answers), never the last\n"
    "                             response; those whose last response cannot fit\n"
    "                             are dropped and counted\n"
    "                             (default: the model's max positions, <= 2048;\n"
    "                             from scratch 2048, GPT-2 512)\n"
    "      --packing              several examples per row of --seq-len positions,\n"
    "                             attention kept inside each example\n"
    "      --no-shuffle           keep the file order (default: shuffle per epoch)\n"
    "      --valid FILE           token lines for the validation loss (val_loss)\n"
    "      --allow-eos-mismatch   train on token lines whose EOS (their header's) is\n"
    "                             not one the model stops at (default: refused)\n"
    "      --eval-every N         validate every N steps and at the end (default 0:\n"
    "                             at the end only; needs --valid)\n"
    "\n"
    "Optimisation (names as transformers' TrainingArguments):\n"
    "      --grad-accum N         micro-batches per optimizer step (default 1)\n"
    "      --epochs F             passes over the data, may be fractional: 0.5 is\n"
    "                             half the steps of an epoch (default 1)\n"
    "      --max-steps N          optimizer steps (overrides --epochs)\n"
    "      --lr F                 peak learning rate (default 5e-5, a full\n"
    "                             fine-tune's; LoRA commonly 1e-4 to 1e-3)\n"
    "      --schedule KIND        constant, linear (default) or cosine\n"
    "      --warmup-steps N       linear warmup from 0 (default 0)\n"
    "      --min-lr F             floor of linear/cosine decay (default 0)\n"
    "      --weight-decay F       AdamW decoupled decay, tensors of 2+ dims (0)\n"
    "      --beta1 F --beta2 F --eps F   AdamW (0.9, 0.999, 1e-8)\n"
    "      --clip F               max global gradient norm, 0 = off (default 1)\n"
    "      --loss-average HOW     tokens or token-mean (default): a step's loss is\n"
    "                             the mean over all its target tokens\n"
    "                             (transformers' Trainer); examples or\n"
    "                             seq-mean-token-mean: the mean over its examples\n"
    "                             of each example's mean over its own target\n"
    "                             tokens, so a 2-token answer weighs as much as a\n"
    "                             long one (the synonyms are verl's loss_agg_mode)\n"
    "      --gradient-checkpointing   keep only each layer's input in the forward\n"
    "                             and recompute the rest in the backward: far less\n"
    "                             memory, about a third more work, the same results\n"
    "                             bit for bit\n"
    "      --dtype TYPE           float32 or f32 (default), bf16 or bfloat16: the\n"
    "                             matrix products (forward and backward) with\n"
    "                             weights and activations rounded to bfloat16,\n"
    "                             float32 sums (AMX-BF16 or AVX512-BF16, -V says\n"
    "                             which); master weights, gradients, AdamW\n"
    "                             state, norms and loss stay float32;\n"
    "                             QLoRA's blocks are dequantized straight\n"
    "                             to bf16 in the products (as --dequantize --dtype\n"
    "                             bf16, no copy)\n"
    "\n"
    "Run:\n"
    "      --save-every N         checkpoint every N steps (always at the end)\n"
    "      --save-total-limit N   keep only the newest N checkpoints (and the best\n"
    "                             one with --load-best-model-at-end); 0 = all\n"
    "      --save-only-model      checkpoints without optimizer state (about 2/3\n"
    "                             smaller for a full fine-tune; cannot be resumed)\n"
    "      --load-best-model-at-end   OUT_DIR gets the model (or adapter) of the\n"
    "                             checkpoint of the lowest val_loss (needs --valid;\n"
    "                             --save-every a multiple of --eval-every)\n"
    "      --resume               continue from the newest complete checkpoint in\n"
    "                             OUT_DIR: bit-identical to an uninterrupted run\n"
    "                             (same options and data, any --threads; what differs\n"
    "                             is named); prints the checkpoint's logged\n"
    "                             metrics first, so the output is the whole run's\n"
    "      --resume-if-possible   --resume, but start a new run when OUT_DIR has\n"
    "                             no checkpoint (--resume alone: an error)\n"
    "      --no-log-history       with --resume: print only the new steps' metrics\n"
    "      --overwrite-output-dir a new run may delete the checkpoints another run\n"
    "                             left in OUT_DIR, and a model's files before a\n"
    "                             LoRA run or an adapter's before a full run\n"
    "                             (otherwise refused)\n"
    "      --seed N               initialisation and shuffling (default 42)\n"
    "      --threads N            threads (default: ICL_NUM_THREADS, else all cores\n"
    "                             less those other programs keep busy, measured\n"
    "                             between steps; a notice names each change;\n"
    "                             results do not depend on the count)\n"
    "      --no-adaptive-threads  without --threads: all cores whatever the load\n"
    "      --log-every N          metrics every N steps (default 1)\n"
    "      --progress / --no-progress   force the progress bar on or off\n"
    "  -q, --quiet                no configuration summary or thread-count notice\n"
    "                             on stderr\n"
    "  -h, --help                 this help\n"
    "  -V, --version              version and BLIS kernels\n"
    "\n"
    "OUT_DIR is locked while a run uses it (OUT_DIR/.lock, removed when the run\n"
    "ends): a second icl-train on it is refused.  SIGINT, SIGTERM and a closed\n"
    "standard output (a reader such as head that exited) save a checkpoint of\n"
    "the last finished step and exit 130 / 143 / 141.  A loss that becomes NaN\n"
    "or infinite stops the run (exit 1).\n"
    "Exit status: 0 ok, 1 bad data or runtime failure, 2 bad usage.\n";

enum {
    O_ARCH = 256, O_HID, O_NL, O_NH, O_NKV, O_INTER, O_BS, O_SL, O_GA, O_EP, O_MS, O_LR, O_SCHED, O_WU, O_MINLR,
    O_WD, O_B1, O_B2, O_EPS, O_CLIP, O_PACK, O_NOSHUF, O_VALID, O_EVAL, O_SAVE, O_RESUME, O_SEED, O_THREADS,
    O_LOG, O_PROG, O_NOPROG, O_VERSION, O_LORA_R, O_LORA_ALPHA, O_LORA_DROP, O_LORA_TGT, O_RSLORA, O_ADAPTER, O_DEQUANT, O_NOADAPT,
    O_LIMIT, O_ONLYMODEL, O_BEST, O_RESUME_IF, O_NOHIST, O_OVERWRITE, O_EOSMIS, O_GGUF, O_GCKPT, O_DTYPE, O_LOSSAVG
};

/* Option values: whole, in range, never truncated (lib/cli.h). */
#define INT_OPT(name, lo) icl_opt_int(name, optarg, lo, INT_MAX)
#define LONG_OPT(name, lo) icl_opt_long(name, optarg, lo, LONG_MAX)
#define NUM_OPT(name) icl_opt_double(name, optarg, 0, HUGE_VAL)

/* ------------------------------------------------------------ reporting */

static volatile sig_atomic_t got_signal;

typedef struct {
    FILE *metrics; /* JSONL of logged steps (stdout) */
    int metrics_errno; /* a failed metrics write: the run stops (EPIPE: like SIGTERM) */
    int replay;    /* print the resumed checkpoint's log history */
    int progress;  /* a progress bar on stderr */
    int bar_open;  /* the bar's line is not finished */
    icl_adapt *adapt; /* the thread count that follows the load (NULL: fixed) */
} reporter;

static void fmt_time(char *b, size_t n, double s)
{
    if (!(s >= 0) || s > 1e7)
        snprintf(b, n, "--:--");
    else if (s >= 3600)
        snprintf(b, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(b, n, "%d:%02d", (int)s / 60, (int)s % 60);
}

static void on_note(void *ctx, int warning, const char *msg)
{
    reporter *rp = ctx;
    if (rp->bar_open)
        fputc('\n', stderr);
    rp->bar_open = 0;
    if (warning)
        warn("%s", msg);
    else
        fprintf(stderr, "icl-train: %s\n", msg);
}

/* One metrics line; a failed write (EPIPE: the reader is gone) stops the
 * run as a signal does, after a checkpoint. */
static void put_metrics(reporter *rp, const icl_train_progress *p)
{
    char line[512];
    if (rp->metrics_errno)
        return;
    icl_train_metrics_json(p, line, sizeof line);
    errno = 0;
    if (fprintf(rp->metrics, "%s\n", line) < 0 || fflush(rp->metrics) == EOF) {
        rp->metrics_errno = errno ? errno : EIO;
        if (!got_signal)
            got_signal = rp->metrics_errno == EPIPE ? SIGPIPE : SIGTERM;
    }
}

static void on_replay(void *ctx, const icl_train_progress *p)
{
    reporter *rp = ctx;
    if (rp->replay)
        put_metrics(rp, p);
}

static void on_step(void *ctx, const icl_train_progress *p)
{
    reporter *rp = ctx;
    if (p->logged)
        put_metrics(rp, p);
    if (rp->progress) {
        double per = p->elapsed / (double)(p->step - p->start_step);
        char eta[32];
        fmt_time(eta, sizeof eta, per * (double)(p->total_steps - p->step));
        fprintf(stderr, "\rstep %ld/%ld  loss %.4f  %.0f tok/s  ETA %s   ", p->step, p->total_steps, p->loss,
                (double)p->tokens / (per > 0 ? per : 1e-9), eta);
        rp->bar_open = p->step != p->total_steps;
        if (!rp->bar_open)
            fputc('\n', stderr);
    }
    if (rp->adapt && p->step != p->total_steps) {
        char where[48];
        snprintf(where, sizeof where, "step %ld", p->step + 1);
        icl_adapt_poll(rp->adapt, where);
    }
}

/* ------------------------------------------------------------ signals */

static void on_signal(int sig) { got_signal = sig; }

/* --save-gguf: OUT_DIR's final model (a model folder, or an adapter folder
 * merged into its base) as OUT_DIR/model.gguf, with the tokenizer of the
 * folder (or the metadata of a GGUF base). */
static void save_gguf(const char *out_dir, uint32_t type, int verbose)
{
    char err[1024], *base = NULL;
    icl_model *m = icl_lora_load_merged(out_dir, NULL, 0, &base, err, sizeof err);
    if (!m)
        icl_die("--save-gguf: %s", err);
    icl_gguf *like = NULL;
    if (icl_is_gguf_file(base) && !(like = icl_gguf_open(base, err, sizeof err)))
        icl_die("--save-gguf: %s", err);
    char *path = icl_path_join(out_dir, "model.gguf"); /* "full/" gives full/model.gguf */
    /* the tokenizer of the folder m was read from (m->src_dir): OUT_DIR's own
     * after a full fine-tune, the base's with LoRA */
    if (icl_gguf_save_model(m, path, type, like, 0, like ? NULL : icl_tok_gguf_folder_writer, err, sizeof err))
        icl_die("%s", err);
    if (verbose)
        fprintf(stderr, "icl-train: wrote %s (%s)\n", path, icl_ggml_type_name(type));
    free(path);
    icl_gguf_close(like);
    icl_model_free(m);
    free(base);
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},
        {"arch", required_argument, 0, O_ARCH},
        {"hidden-size", required_argument, 0, O_HID},
        {"num-hidden-layers", required_argument, 0, O_NL},
        {"num-attention-heads", required_argument, 0, O_NH},
        {"num-key-value-heads", required_argument, 0, O_NKV},
        {"intermediate-size", required_argument, 0, O_INTER},
        {"tokenizer", required_argument, 0, 't'},
        {"output-dir", required_argument, 0, 'o'},
        {"batch-size", required_argument, 0, O_BS},
        {"per-device-train-batch-size", required_argument, 0, O_BS},
        {"seq-len", required_argument, 0, O_SL},
        {"grad-accum", required_argument, 0, O_GA},
        {"gradient-accumulation-steps", required_argument, 0, O_GA},
        {"epochs", required_argument, 0, O_EP},
        {"num-train-epochs", required_argument, 0, O_EP},
        {"max-steps", required_argument, 0, O_MS},
        {"lr", required_argument, 0, O_LR},
        {"learning-rate", required_argument, 0, O_LR},
        {"schedule", required_argument, 0, O_SCHED},
        {"lr-scheduler-type", required_argument, 0, O_SCHED},
        {"warmup-steps", required_argument, 0, O_WU},
        {"min-lr", required_argument, 0, O_MINLR},
        {"weight-decay", required_argument, 0, O_WD},
        {"beta1", required_argument, 0, O_B1},
        {"adam-beta1", required_argument, 0, O_B1},
        {"beta2", required_argument, 0, O_B2},
        {"adam-beta2", required_argument, 0, O_B2},
        {"eps", required_argument, 0, O_EPS},
        {"adam-epsilon", required_argument, 0, O_EPS},
        {"clip", required_argument, 0, O_CLIP},
        {"max-grad-norm", required_argument, 0, O_CLIP},
        {"gradient-checkpointing", no_argument, 0, O_GCKPT},
        {"dtype", required_argument, 0, O_DTYPE},
        {"loss-average", required_argument, 0, O_LOSSAVG},
        {"packing", no_argument, 0, O_PACK},
        {"no-shuffle", no_argument, 0, O_NOSHUF},
        {"valid", required_argument, 0, O_VALID},
        {"eval-every", required_argument, 0, O_EVAL},
        {"eval-steps", required_argument, 0, O_EVAL},
        {"save-every", required_argument, 0, O_SAVE},
        {"save-steps", required_argument, 0, O_SAVE},
        {"resume", no_argument, 0, O_RESUME},
        {"resume-if-possible", no_argument, 0, O_RESUME_IF},
        {"no-log-history", no_argument, 0, O_NOHIST},
        {"overwrite-output-dir", no_argument, 0, O_OVERWRITE},
        {"save-total-limit", required_argument, 0, O_LIMIT},
        {"save-only-model", no_argument, 0, O_ONLYMODEL},
        {"load-best-model-at-end", no_argument, 0, O_BEST},
        {"allow-eos-mismatch", no_argument, 0, O_EOSMIS}, {"save-gguf", required_argument, 0, O_GGUF},
        {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, O_THREADS},
        {"log-every", required_argument, 0, O_LOG},
        {"logging-steps", required_argument, 0, O_LOG},
        {"progress", no_argument, 0, O_PROG},
        {"no-progress", no_argument, 0, O_NOPROG},
        {"lora-r", required_argument, 0, O_LORA_R},
        {"lora-alpha", required_argument, 0, O_LORA_ALPHA},
        {"lora-dropout", required_argument, 0, O_LORA_DROP},
        {"lora-targets", required_argument, 0, O_LORA_TGT},
        {"use-rslora", no_argument, 0, O_RSLORA},
        {"adapter", required_argument, 0, O_ADAPTER},
        {"dequantize", no_argument, 0, O_DEQUANT},
        {"no-adaptive-threads", no_argument, 0, O_NOADAPT},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    icl_train_opts o;
    icl_train_opts_default(&o);
    int progress = -1; /* -1: when stderr is a terminal */
    int gguf_type = -1; /* --save-gguf */
    int replay = 1;
    int adaptive = 1; /* --no-adaptive-threads: 0 */
    int c;
    while ((c = icl_getopt(argc, argv, "m:t:o:qhV", lo)) != -1) {
        switch (c) {
        case 'm': o.model_dir = optarg; break;
        case O_ARCH: o.arch = optarg; break;
        case O_HID: o.hidden_size = INT_OPT("--hidden-size", 1); break;
        case O_NL: o.num_hidden_layers = INT_OPT("--num-hidden-layers", 1); break;
        case O_NH: o.num_attention_heads = INT_OPT("--num-attention-heads", 1); break;
        case O_NKV: o.num_key_value_heads = INT_OPT("--num-key-value-heads", 1); break;
        case O_INTER: o.intermediate_size = INT_OPT("--intermediate-size", 1); break;
        case 't': o.tokenizer = optarg; break;
        case 'o': o.out_dir = optarg; break;
        case O_BS: o.batch_size = INT_OPT("--batch-size", 1); break;
        case O_SL: o.seq_len = INT_OPT("--seq-len", 2); break;
        case O_GA: o.grad_accum = INT_OPT("--grad-accum", 1); break;
        case O_EP: o.epochs = icl_opt_double_gt("--epochs", optarg, 0, 1e9); break;
        case O_MS: o.max_steps = LONG_OPT("--max-steps", 1); break;
        case O_LR: o.adamw.lr = NUM_OPT("--lr"); break;
        case O_SCHED:
            if (icl_sched_parse(optarg, &o.schedule))
                usage_die("--schedule %s: want constant, linear or cosine", optarg);
            break;
        case O_WU: o.warmup_steps = LONG_OPT("--warmup-steps", 0); break;
        case O_MINLR: o.min_lr = NUM_OPT("--min-lr"); break;
        case O_WD: o.adamw.weight_decay = NUM_OPT("--weight-decay"); break;
        case O_B1: o.adamw.beta1 = NUM_OPT("--beta1"); break;
        case O_B2: o.adamw.beta2 = NUM_OPT("--beta2"); break;
        case O_EPS: o.adamw.eps = NUM_OPT("--eps"); break;
        case O_CLIP: o.clip = NUM_OPT("--clip"); break;
        case O_GCKPT: o.gradient_checkpointing = 1; break;
        case O_DTYPE: o.bf16 = icl_opt_bf16("--dtype", optarg); break;
        case O_LOSSAVG: {
            static const char *const how[] = {"tokens", "token-mean", "examples", "seq-mean-token-mean", NULL};
            o.loss_average_examples = icl_opt_choice("--loss-average", optarg, how) >= 2;
            break;
        }
        case O_PACK: o.packing = 1; break;
        case O_NOSHUF: o.shuffle = 0; break;
        case O_VALID: o.valid = optarg; break;
        case O_EVAL: o.eval_every = LONG_OPT("--eval-every", 0); break;
        case O_SAVE: o.save_every = LONG_OPT("--save-every", 0); break;
        case O_RESUME: o.resume = 1; break;
        case O_RESUME_IF: o.resume = o.resume_if_possible = 1; break;
        case O_NOHIST: replay = 0; break;
        case O_OVERWRITE: o.overwrite_output_dir = 1; break;
        case O_LIMIT: o.save_total_limit = LONG_OPT("--save-total-limit", 0); break;
        case O_ONLYMODEL: o.save_only_model = 1; break;
        case O_BEST: o.load_best_model_at_end = 1; break;
        case O_EOSMIS: o.allow_eos_mismatch = 1; break;
        case O_GGUF:
            gguf_type = icl_ggml_type_by_name(optarg);
            if (gguf_type != ICL_GGML_F32 && gguf_type != ICL_GGML_F16 && gguf_type != ICL_GGML_BF16 &&
                gguf_type != ICL_GGML_Q8_0 && gguf_type != ICL_GGML_Q4_0 && gguf_type != ICL_GGML_Q4_1)
                icl_usage_die("--save-gguf %s: not one of F32, F16, BF16, Q8_0, Q4_0, Q4_1", optarg);
            break;
        case O_SEED: o.seed = icl_opt_u64("--seed", optarg); break;
        case O_THREADS: o.threads = icl_opt_threads("--threads", optarg); break;
        case O_LOG: o.log_every = LONG_OPT("--log-every", 1); break;
        case O_PROG: progress = 1; break;
        case O_NOPROG: progress = 0; break;
        case O_LORA_R: o.lora_r = INT_OPT("--lora-r", 1); break;
        case O_LORA_ALPHA: o.lora_alpha = NUM_OPT("--lora-alpha"), o.lora_alpha_given = 1; break;
        case O_LORA_DROP: o.lora_dropout = icl_opt_double("--lora-dropout", optarg, 0, 1); break;
        case O_LORA_TGT: o.lora_targets = optarg; break;
        case O_RSLORA: o.use_rslora = 1; break;
        case O_ADAPTER:
            if (o.adapter)
                usage_die("--adapter %s: given twice (icl-train starts from one adapter; icl-convert --adapter A "
                          "--adapter B merges several into a model)", optarg);
            o.adapter = optarg;
            break;
        case O_DEQUANT: o.dequantize = 1; break;
        case O_NOADAPT: adaptive = 0; break;
        case 'q': o.verbose = 0, icl_quiet = 1; break;
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': icl_version_exit();
        default: icl_die("option %d not handled (a bug)", c); /* icl_getopt reported bad ones */
        }
    }
    o.files = (const char *const *)argv + optind;
    o.nfiles = argc - optind;
    char err[1024];
    if (icl_train_opts_check(&o, err, sizeof err))
        usage_die("%s", err);

    icl_dp dp; /* mpirun -np N: data parallelism (dp/dp.h) */
    if (dp_init(&dp, &got_signal, err, sizeof err))
        dp_die(&dp, 1, err);
    reporter rp = {.metrics = stdout, .replay = replay, .progress = progress < 0 ? isatty(2) : progress};
    icl_train_hooks h = {.note = on_note, .step = on_step, .ctx = &rp, .stop = &got_signal, .replay = on_replay};
    if (dp_start(&dp, &o, &h, err, sizeof err))
        dp_die(&dp, 2, err);
    /* the thread count follows the load unless fixed (--threads, $ICL_NUM_THREADS,
     * several ranks: dp_start fixed it or other ranks are not ours to measure) */
    const char *env_threads = getenv("ICL_NUM_THREADS");
    static icl_adapt adapt;
    icl_adapt_start(&adapt, adaptive && o.threads == 0 && !(env_threads && *env_threads) && dp.world == 1, 0,
                    o.verbose);
    adapt.line_open = &rp.bar_open;
    rp.adapt = adapt.on ? &adapt : NULL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed metrics pipe is EPIPE: checkpoint, then exit */
    int rc = icl_train(&o, &h, err, sizeof err);
    if (rp.bar_open)
        fputc('\n', stderr);
    if (rc < 0 || (rc = dp_finish(&dp, rc, err, sizeof err)) < 0)
        dp_die(&dp, 1, err);
    if (dp.world > 1 && dp.rank == 0 && o.verbose && dp.steps > 0)
        fprintf(stderr,
                "icl-train: gradient all-reduce: %.1f MB per step, %.2f s per step on rank 0 (communication and "
                "waiting%s)\n",
                dp.bytes / 1e6, dp.reduce_s / (double)dp.steps, dp.overlap ? ", beside the backward" : "");
    if (rp.metrics_errno)
        clearerr(stdout); /* reported here, not again at exit with a stale errno */
    if (rp.metrics_errno && rp.metrics_errno != EPIPE)
        icl_die("standard output: cannot write the metrics: %s (stopped after a checkpoint)", strerror(rp.metrics_errno));
    if (rc == 1) {
        int sig = dp.world > 1 ? dp.stop : got_signal;
        return sig == SIGINT ? 130 : sig == SIGPIPE ? 141 : 143;
    }
    if (gguf_type >= 0 && dp.rank == 0)
        save_gguf(o.out_dir, (uint32_t)gguf_type, o.verbose);
    return 0;
}
