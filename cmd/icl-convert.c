/* icl-convert - a GGUF file to a Hugging Face model folder, or a folder to a
 * GGUF file.  See icl-convert(1).  The work is in lib/gguf_model.c. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "gguf.h"
#include "gguf_model.h"
#include "tokgguf.h"
#include "lora.h"
#include "model.h"
#include "cli.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
"Usage: icl-convert [OPTION]... MODEL.gguf DIR\n"
"       icl-convert [OPTION]... DIR MODEL.gguf\n"
"       icl-convert [OPTION]... ADAPTER_DIR LORA.gguf\n"
"Convert a GGUF model file (llama.cpp's format) to a Hugging Face model folder\n"
"(config.json, model.safetensors in float32, generation_config.json), or a\n"
"folder to a GGUF file (GGUF to GGUF goes through a folder: convert the\n"
"folder back with --like and --type; a folder is written to a folder only\n"
"with --adapter, merging).  Architectures: llama, qwen2, gpt2.\n"
"A PEFT LoRA adapter folder (adapter_config.json, no config.json) is written\n"
"as a llama.cpp LoRA adapter GGUF (llama-cli --lora,\n"
"llama_cpp.Llama(lora_path=)).\n"
"An output folder is made if missing; the folder it goes in must exist.\n"
"\n"
"  -T, --type TYPE   tensor type of the GGUF file written: F32 (default),\n"
"                    F16, BF16, Q8_0, Q4_0 or Q4_1 (vectors stay F32; a matrix\n"
"                    whose rows are not whole blocks stays F32; with Q4_0/\n"
"                    Q4_1 the output head, or tied embedding, is Q8_0 as\n"
"                    llama.cpp's quantizer keeps it); a LoRA\n"
"                    adapter GGUF: F32, F16, BF16 or Q8_0\n"
"  -L, --like FILE   writing a GGUF file: copy FILE's metadata (tokenizer.*,\n"
"                    general.*) and, unless --type is given, give each tensor\n"
"                    the type it has in FILE (e.g. the GGUF the folder was\n"
"                    converted from)\n"
"  -a, --adapter DIR[:SCALE]\n"
"                    merge the PEFT LoRA adapter folder DIR into the model\n"
"                    before writing it, as PEFT's merge_and_unload (W += SCALE\n"
"                    * lora_alpha/r * B A; SCALE default 1); repeatable,\n"
"                    merged in order.  With --adapter, a folder is written\n"
"                    as a folder when OUT does not end in .gguf\n"
"  -b, --base MODEL  writing a LoRA adapter GGUF: the base model (folder or\n"
"                    GGUF file) the adapter was trained on (default: its\n"
"                    adapter_config.json's base_model_name_or_path)\n"
"      --threads N   threads (default: all cores, or ICL_NUM_THREADS)\n"
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
"  icl-convert --base smollm2/ lora-run/ lora-run.gguf\n"
"\n"
"Exit status: 0 ok, 1 bad input or failure, 2 bad usage.\n");
}

/* The tokenizer side of GGUF conversion (lib/tokgguf.h): tokenizer.ggml.*
 * keys -> tokenizer.json + tokenizer_config.json, and a folder's
 * tokenizer.json (+ tokenizer_config.json) -> tokenizer.ggml.* keys.  A
 * file or folder without a tokenizer converts without one. */
static int tokenizer_gguf_to_folder(const icl_gguf *g, const char *dir, char *err, size_t errsz)
{
    if (!icl_gguf_find_kv(g, "tokenizer.ggml.model"))
        return 0;
    icl_tok_gguf m;
    if (icl_tok_gguf_read(g, &m, err, errsz))
        return -1;
    char e2[512];
    int rc = icl_tok_gguf_write_hf(&m, dir, e2, sizeof e2);
    if (rc)
        snprintf(err, errsz, "%s: tokenizer: %s", icl_gguf_name(g), e2);
    icl_tok_gguf_free(&m);
    return rc;
}

/* A PEFT adapter folder: adapter_config.json and no config.json. */
static int is_adapter_dir(const char *p)
{
    struct stat st;
    if (stat(p, &st) || !S_ISDIR(st.st_mode))
        return 0;
    char *a = icl_path_join(p, "adapter_config.json"), *c = icl_path_join(p, "config.json");
    int r = stat(a, &st) == 0 && stat(c, &st) != 0;
    free(a);
    free(c);
    return r;
}

/* The files a model folder written here may hold (icl_model_save, the
 * tokenizer side): when the output folder held an earlier conversion, those
 * the new one does not write are removed (icl_stage_commit), so that no old
 * tokenizer.json sits beside new weights. */
static const char *const folder_files[] = {
    "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
    "tokenizer.model", "added_tokens.json", "chat_template.jinja", NULL,
};

/* Write m (and, from g when not NULL, its tokenizer) as the model folder
 * out, all or nothing: into a temporary sibling folder, moved into place
 * only when every file is written (fileio.h, icl_stage_dir). */
static void save_folder(const icl_model *m, const icl_gguf *g, const char *out)
{
    char err[1024];
    char *tmp = icl_stage_dir(out, err, sizeof err);
    if (!tmp)
        icl_die("%s", err);
    if (icl_model_save(m, tmp, err, sizeof err) || (g && tokenizer_gguf_to_folder(g, tmp, err, sizeof err)) ||
        icl_stage_commit(tmp, out, folder_files, err, sizeof err)) {
        icl_stage_abort(tmp);
        icl_die("%s: %s", out, err);
    }
    free(tmp);
}

/* Refuse (usage error, before any work) an output that would destroy an
 * input: out the same file as the input file f, a file (not a .gguf: no
 * folder's .gguf is read) of the input folder f, or, when out is a folder,
 * the input folder f itself. */
static void refuse_onto_input(const char *out, const char *f)
{
    struct stat so, sf;
    if (!f || stat(out, &so) || stat(f, &sf))
        return;
    if (S_ISDIR(sf.st_mode) && S_ISDIR(so.st_mode) && so.st_dev == sf.st_dev && so.st_ino == sf.st_ino)
        icl_usage_die("%s is the input folder %s: it would be overwritten", out, f);
    if (!S_ISDIR(sf.st_mode)) {
        if (icl_same_file(f, out))
            icl_usage_die("%s is both an input and the output: it would be destroyed", out);
        return;
    }
    DIR *d = opendir(f);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l >= 5 && !strcmp(e->d_name + l - 5, ".gguf"))
            continue;
        char *p = icl_path_join(f, e->d_name);
        int same = icl_same_file(p, out);
        free(p);
        if (same)
            icl_usage_die("%s is %s of the input folder %s: it would be destroyed", out, e->d_name, f);
    }
    if (d)
        closedir(d);
}

/* The folder of an --adapter DIR[:SCALE] (malloc'd) and its scale; a bad
 * spec is a usage error. */
static char *spec_dir(const char *spec, double *sc)
{
    char err[1024];
    char *d = icl_lora_parse_spec(spec, sc, err, sizeof err);
    if (!d)
        icl_usage_die("%s", err);
    return d;
}

/* refuse_onto_input for each --adapter DIR[:SCALE]'s folder. */
static void refuse_onto_adapters(const char *out, const char *const *specs, int n)
{
    for (int i = 0; i < n; i++) {
        double sc;
        char *d = spec_dir(specs[i], &sc);
        refuse_onto_input(out, d);
        free(d);
    }
}

/* --adapter DIR[:SCALE]...: merged into m in order (lora.h). */
static void merge_adapters(icl_model *m, const char *const *specs, int n)
{
    char err[1024];
    for (int i = 0; i < n; i++) {
        double sc;
        char *d = spec_dir(specs[i], &sc);
        if (icl_lora_merge(m, d, sc, err, sizeof err))
            icl_die("%s", err);
        free(d);
    }
}

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    static const struct option opts[] = {
        {"type", required_argument, 0, 'T'}, {"like", required_argument, 0, 'L'},
        {"threads", required_argument, 0, 256}, {"adapter", required_argument, 0, 'a'},
        {"base", required_argument, 0, 'b'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    int c, type = ICL_GGML_F32, type_given = 0;
    long threads = 0;
    const char *like = NULL, *base = NULL;
    static const char *adapters[64];
    int n_adapters = 0;
    while ((c = icl_getopt(argc, argv, "T:L:a:b:hV", opts)) != -1) {
        switch (c) {
        case 'T':
            type = icl_ggml_type_by_name(optarg);
            if (type != ICL_GGML_F32 && type != ICL_GGML_F16 && type != ICL_GGML_BF16 && type != ICL_GGML_Q8_0 &&
                type != ICL_GGML_Q4_0 && type != ICL_GGML_Q4_1)
                icl_usage_die("--type %s: not one of F32, F16, BF16, Q8_0, Q4_0, Q4_1", optarg);
            type_given = 1;
            break;
        case 'L': like = optarg; break;
        case 'b': base = optarg; break;
        case 'a':
            if (n_adapters == 64)
                icl_usage_die("--adapter: at most 64");
            adapters[n_adapters++] = optarg;
            break;
        case 256: threads = icl_opt_threads("--threads", optarg); break;
        case 'h': usage(stdout); return ICL_EXIT_OK;
        case 'V': icl_version_exit();
        default: icl_die("option %d not handled (a bug)", c); /* icl_getopt reported bad ones */
        }
    }
    if (argc - optind != 2)
        icl_usage_die("need an input and an output");
    const char *in = argv[optind], *out = argv[optind + 1];
    icl_set_threads((int)threads);
    char err[1024];
    struct stat st;
    if (is_adapter_dir(in)) {
        if (n_adapters || like)
            icl_usage_die("--%s: %s is a LoRA adapter folder, written as a llama.cpp LoRA GGUF as it is, without "
                          "--%s (icl-convert [--base BASE] %s OUT.gguf); to merge it into its base model instead, "
                          "give the base as input: icl-convert --adapter %s BASE_DIR OUT.gguf (a GGUF base: "
                          "icl-convert --adapter %s BASE.gguf DIR, then icl-convert --like BASE.gguf DIR OUT.gguf)",
                          like ? "like" : "adapter", in, like ? "like" : "adapter", in, in, in);
        if (type != ICL_GGML_F32 && type != ICL_GGML_F16 && type != ICL_GGML_BF16 && type != ICL_GGML_Q8_0)
            icl_usage_die("--type %s: a LoRA adapter GGUF is F32, F16, BF16 or Q8_0", icl_ggml_type_name((uint32_t)type));
        size_t lo = strlen(out);
        if (out[lo ? lo - 1 : 0] == '/' || (stat(out, &st) == 0 && S_ISDIR(st.st_mode)))
            icl_usage_die("%s is a LoRA adapter folder, written as a llama.cpp LoRA GGUF file, and %s is a folder: "
                          "give a file name (e.g. OUT.gguf)", in, out);
        refuse_onto_input(out, in);
        char *bp = base ? NULL : icl_lora_base_path(in, err, sizeof err); /* its errors: icl_lora_save_gguf's */
        refuse_onto_input(out, base ? base : bp);
        free(bp);
        if (icl_lora_save_gguf(in, base, out, (uint32_t)type, err, sizeof err))
            icl_die("%s", err);
        return ICL_EXIT_OK;
    }
    if (base)
        icl_usage_die("--base applies to a LoRA adapter folder, and %s is not one", in);
    if (icl_is_gguf_file(in)) {
        size_t lo = strlen(out);
        /* before --type/--like: with an output named .gguf, the two commands that do it are the answer */
        if (lo >= 5 && !strcmp(out + lo - 5, ".gguf"))
            icl_usage_die("%s is a GGUF file, converted to a Hugging Face folder, and %s names a .gguf file: "
                          "convert to a folder first, then the folder to GGUF (icl-convert %sIN.gguf DIR; "
                          "icl-convert --like IN.gguf %s%s DIR OUT.gguf)",
                          in, out, n_adapters ? "--adapter ADAPTER " : "", type_given ? "--type " : "[--type TYPE]",
                          type_given ? icl_ggml_type_name((uint32_t)type) : "");
        if (type_given || like)
            icl_usage_die("--%s applies to writing a GGUF file, and %s is a GGUF file, converted to a folder "
                          "(GGUF to GGUF goes through a folder: see icl-convert(1))",
                          like ? "like" : "type", in);
        refuse_onto_input(out, in);
        refuse_onto_adapters(out, adapters, n_adapters);
        if (icl_out_dir_check(out, err, sizeof err)) /* before the work: its parent must exist */
            icl_die("%s", err);
        icl_gguf *g = icl_gguf_open(in, err, sizeof err);
        if (!g)
            icl_die("%s", err);
        icl_model *m = icl_model_load_gguf(in, err, sizeof err);
        if (!m)
            icl_die("%s", err);
        merge_adapters(m, adapters, n_adapters);
        save_folder(m, g, out);
        icl_model_free(m);
        icl_gguf_close(g);
    } else if (stat(in, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t lo = strlen(out);
        int gguf_out = lo >= 5 && !strcmp(out + lo - 5, ".gguf");
        if (!n_adapters && (out[lo ? lo - 1 : 0] == '/' || (stat(out, &st) == 0 && S_ISDIR(st.st_mode))))
            icl_usage_die("%s is a model folder, converted to a GGUF file, and %s is a folder: give a file name "
                          "(e.g. OUT.gguf); a folder is written to a folder only when merging adapters "
                          "(icl-convert --adapter ADAPTER_DIR %s OUT_DIR)",
                          in, out, in);
        refuse_onto_input(out, in);
        refuse_onto_input(out, like);
        refuse_onto_adapters(out, adapters, n_adapters);
        if (n_adapters && !gguf_out && icl_out_dir_check(out, err, sizeof err))
            icl_die("%s", err);
        icl_gguf *lg = NULL;
        if (like && !(lg = icl_gguf_open(like, err, sizeof err)))
            icl_die("%s", err);
        icl_model *m = icl_model_load(in, err, sizeof err);
        if (!m)
            icl_die("%s", err); /* it names the file */
        merge_adapters(m, adapters, n_adapters);
        if (n_adapters && !gguf_out) { /* merged folder -> folder */
            if (type_given || like)
                icl_usage_die("--type and --like apply to writing a GGUF file (a name ending in .gguf)");
            save_folder(m, NULL, out);
        } else if (icl_gguf_save_model(m, out, (uint32_t)type, lg, !type_given, icl_tok_gguf_folder_writer, err,
                                       sizeof err))
            icl_die("%s", err);
        icl_model_free(m);
        icl_gguf_close(lg);
    } else if (stat(in, &st) != 0) {
        icl_die("%s: %s (want a model folder or a GGUF file)", in, strerror(errno));
    } else {
        icl_die("%s: neither a GGUF file nor a model folder", in);
    }
    return ICL_EXIT_OK;
}
