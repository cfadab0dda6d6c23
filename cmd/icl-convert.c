/* icl-convert - a GGUF file to a Hugging Face model folder, or a folder to a
 * GGUF file.  See icl-convert(1).  The work is in lib/gguf_model.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "gguf_model.h"
#include "lora.h"
#include "model.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
"Usage: icl-convert [OPTION]... MODEL.gguf DIR\n"
"       icl-convert [OPTION]... DIR MODEL.gguf\n"
"Convert a GGUF model file (llama.cpp's format) to a Hugging Face model folder\n"
"(config.json, model.safetensors in float32, generation_config.json), or a\n"
"folder to a GGUF file.  Architectures: llama, qwen2, gpt2.\n"
"\n"
"  -T, --type TYPE   tensor type of the GGUF file written: F32 (default),\n"
"                    F16, BF16, Q8_0, Q4_0 or Q4_1 (vectors stay F32; a matrix\n"
"                    whose rows are not whole blocks stays F32)\n"
"  -L, --like FILE   writing a GGUF file: copy FILE's metadata (tokenizer.*,\n"
"                    general.*) and give each tensor the type it has in FILE\n"
"                    (e.g. the GGUF the folder was converted from)\n"
"  -a, --adapter DIR[:SCALE]\n"
"                    merge the PEFT LoRA adapter folder DIR into the model\n"
"                    before writing it, as PEFT's merge_and_unload (W += SCALE\n"
"                    * lora_alpha/r * B A; SCALE default 1); repeatable,\n"
"                    merged in order.  With --adapter, a folder is written\n"
"                    as a folder when OUT does not end in .gguf\n"
"  -t, --threads N   threads (default: all cores, or ICL_NUM_THREADS)\n"
"  -h, --help        show this help and exit\n"
"  -V, --version     show the version and exit\n"
"\n"
"Quantized GGUF tensors are dequantized exactly as ggml does; llama's q/k rows\n"
"are un-permuted on the way in and permuted again on the way out.\n"
"\n"
"Examples:\n"
"  icl-convert SmolLM2-135M-Instruct.Q4_1.gguf smollm2/\n"
"  icl-convert --type Q8_0 run/ run.q8_0.gguf\n"
"  icl-convert --adapter lora-run/ base/ merged.f16.gguf --type F16\n"
"\n"
"Exit status: 0 ok, 1 bad input or failure, 2 bad usage.\n");
}

/* Seams for the tokenizer side of GGUF conversion (tokenizer.ggml.* keys <->
 * tokenizer.json/tokenizer_config.json): not done here yet; the model
 * conversion calls these so the tokenizer code plugs in at one place. */
static int tokenizer_gguf_to_folder(const icl_gguf *g, const char *dir, char *err, size_t errsz)
{
    (void)g, (void)dir, (void)err, (void)errsz;
    return 0;
}
static const icl_gguf_tok_writer tokenizer_folder_to_gguf = NULL;

/* --adapter DIR[:SCALE]...: merged into m in order (lora.h). */
static void merge_adapters(icl_model *m, const char *const *specs, int n)
{
    char err[1024];
    for (int i = 0; i < n; i++) {
        double sc;
        char *d = icl_lora_parse_spec(specs[i], &sc, err, sizeof err);
        if (!d)
            usage_die("%s", err);
        if (icl_lora_merge(m, d, sc, err, sizeof err))
            die("%s", err);
        free(d);
    }
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    static const struct option opts[] = {
        {"type", required_argument, 0, 'T'}, {"like", required_argument, 0, 'L'},
        {"threads", required_argument, 0, 't'}, {"adapter", required_argument, 0, 'a'},
        {"help", no_argument, 0, 'h'},       {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    int c, type = ICL_GGML_F32, type_given = 0;
    long threads = 0;
    const char *like = NULL;
    static const char *adapters[64];
    int n_adapters = 0;
    while ((c = getopt_long(argc, argv, "T:L:t:a:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            type = icl_ggml_type_by_name(optarg);
            if (type != ICL_GGML_F32 && type != ICL_GGML_F16 && type != ICL_GGML_BF16 && type != ICL_GGML_Q8_0 &&
                type != ICL_GGML_Q4_0 && type != ICL_GGML_Q4_1)
                usage_die("--type %s: not one of F32, F16, BF16, Q8_0, Q4_0, Q4_1", optarg);
            type_given = 1;
            break;
        case 'L': like = optarg; break;
        case 'a':
            if (n_adapters == 64)
                usage_die("--adapter: at most 64");
            adapters[n_adapters++] = optarg;
            break;
        case 't':
            if (parse_long(optarg, &threads) || threads < 1)
                usage_die("--threads %s: not a positive integer", optarg);
            break;
        case 'h': usage(stdout); return ICL_EXIT_OK;
        case 'V': icl_print_version(); return ICL_EXIT_OK;
        default: usage_die("unknown option");
        }
    }
    if (argc - optind != 2)
        usage_die("need an input and an output");
    const char *in = argv[optind], *out = argv[optind + 1];
    icl_set_threads((int)threads);
    char err[1024];
    struct stat st;
    if (icl_is_gguf_file(in)) {
        if (type_given || like)
            usage_die("--%s applies to writing a GGUF file, and %s is one being read", like ? "like" : "type", in);
        icl_gguf *g = icl_gguf_open(in, err, sizeof err);
        if (!g)
            die("%s", err);
        icl_model *m = icl_model_load_gguf(in, err, sizeof err);
        if (!m)
            die("%s", err);
        merge_adapters(m, adapters, n_adapters);
        if (icl_model_save(m, out, err, sizeof err) || tokenizer_gguf_to_folder(g, out, err, sizeof err))
            die("%s: %s", out, err);
        icl_model_free(m);
        icl_gguf_close(g);
    } else if (stat(in, &st) == 0 && S_ISDIR(st.st_mode)) {
        icl_gguf *lg = NULL;
        if (like && !(lg = icl_gguf_open(like, err, sizeof err)))
            die("%s", err);
        icl_model *m = icl_model_load(in, err, sizeof err);
        if (!m)
            die("%s: %s", in, err);
        merge_adapters(m, adapters, n_adapters);
        size_t lo = strlen(out);
        if (n_adapters && !(lo >= 5 && !strcmp(out + lo - 5, ".gguf"))) { /* merged folder -> folder */
            if (type_given || like)
                usage_die("--type and --like apply to writing a GGUF file (a name ending in .gguf)");
            if (icl_model_save(m, out, err, sizeof err))
                die("%s: %s", out, err);
        } else if (icl_gguf_save_model(m, out, (uint32_t)type, lg, tokenizer_folder_to_gguf, err, sizeof err))
            die("%s", err);
        icl_model_free(m);
        icl_gguf_close(lg);
    } else {
        die("%s: neither a GGUF file nor a model folder", in);
    }
    return ICL_EXIT_OK;
}
