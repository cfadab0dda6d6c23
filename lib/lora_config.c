/* lora_config.c - PEFT's adapter_config.json: reading, writing, targets,
 * scale.  No model code.  See lora.h. */
#include "lora.h"
#include "sniff.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "util.h"

double icl_lora_scale(const icl_lora_config *c)
{
    return c->use_rslora ? c->lora_alpha / sqrt((double)c->r) : c->lora_alpha / (double)c->r;
}

void icl_lora_config_free(icl_lora_config *c)
{
    for (int i = 0; i < c->n_targets; i++)
        free(c->target_modules[i]);
    free(c->target_modules);
    free(c->base_model_name_or_path);
    c->target_modules = NULL;
    c->base_model_name_or_path = NULL;
    c->n_targets = 0;
}

static void push_target(icl_lora_config *c, const char *s, size_t n)
{
    size_t k = (size_t)c->n_targets; /* room for a power of two: grown at 0, 1, 2, 4, ... (a list of 10^5) */
    if (!(k & (k - 1)))
        c->target_modules = xreallocarray(c->target_modules, k ? 2 * k : 1, sizeof *c->target_modules);
    c->target_modules[c->n_targets++] = xstrndup(s, n);
}

/* push_target unless s is there already (a linear search: short lists) */
static void add_target(icl_lora_config *c, const char *s, size_t n)
{
    for (int i = 0; i < c->n_targets; i++)
        if (strlen(c->target_modules[i]) == n && !strncmp(c->target_modules[i], s, n))
            return;
    push_target(c, s, n);
}

int icl_lora_set_targets(icl_lora_config *c, const icl_config *mc, const char *spec, char *err, size_t errsz)
{
    static const char *const llama_all[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                            "down_proj"};
    static const char *const gpt2_all[] = {"c_attn", "c_proj", "c_fc"};
    static const char *const llama_def[] = {"q_proj", "v_proj"};
    static const char *const gpt2_def[] = {"c_attn"};
    int gpt2 = mc->arch == ICL_ARCH_GPT2;
    for (int i = 0; i < c->n_targets; i++)
        free(c->target_modules[i]);
    c->n_targets = 0;
    const char *const *list = NULL;
    int n = 0;
    if (!spec) {
        list = gpt2 ? gpt2_def : llama_def;
        n = gpt2 ? 1 : 2;
    } else if (!strcmp(spec, "all-linear")) {
        list = gpt2 ? gpt2_all : llama_all;
        n = gpt2 ? 3 : 7;
    }
    if (list) {
        for (int i = 0; i < n; i++)
            add_target(c, list[i], strlen(list[i]));
        return 0;
    }
    for (const char *s = spec;;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0) {
            icl_seterr(err, errsz, "LoRA targets \"%s\": an empty module name", spec);
            return -1;
        }
        add_target(c, s, len);
        if (!e)
            break;
        s = e + 1;
    }
    return 0;
}

/* The fewest significant digits (1-17) whose %g form of x reads back as x. */
static int shortest_digits(double x)
{
    char b[40];
    for (int p = 1; p < 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, x);
        if (strtod(b, NULL) == x)
            return p;
    }
    return 17;
}

/* ------------------------------------------------------------ adapter_config.json */

int icl_lora_parse_config(const char *text, size_t len, const char *path, icl_lora_config *c, char *err,
                          size_t errsz)
{
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je), *seen = NULL;
    int rc = -1;
#define BAD(...) do { icl_seterr(err, errsz, __VA_ARGS__); goto out; } while (0)
    if (!root)
        BAD("%s:%d: %s", path, je.line, je.text);
    if (!json_is_object(root))
        BAD("%s: not a JSON object", path);
    json_t *v = json_object_get(root, "peft_type");
    if (!json_is_string(v) || strcmp(json_string_value(v), "LORA"))
        BAD("%s: peft_type is not \"LORA\"", path);
    v = json_object_get(root, "r");
    if (!v)
        BAD("%s: no \"r\" (PEFT writes the rank; a config written by hand must give it)", path);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65536)
        BAD("%s: \"r\" is not an integer in [1, 65536]", path);
    c->r = (int)json_integer_value(v);
    v = json_object_get(root, "lora_alpha");
    if (!v)
        BAD("%s: no \"lora_alpha\" (PEFT writes it; a config written by hand must give it)", path);
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        BAD("%s: \"lora_alpha\" is not a number", path);
    c->lora_alpha = json_number_value(v);
    v = json_object_get(root, "lora_dropout");
    if (v && !json_is_null(v) && !json_is_number(v))
        BAD("%s: \"lora_dropout\" is not a number", path);
    c->lora_dropout = json_is_number(v) ? json_number_value(v) : 0;
    if (!(c->lora_dropout >= 0 && c->lora_dropout < 1))
        BAD("%s: \"lora_dropout\" is not in [0, 1)", path);
    /* PEFT takes any non-empty string as true: "false" is no false */
    static const char *const flags[] = {"use_rslora", "use_dora"};
    for (size_t i = 0; i < 2; i++) {
        v = json_object_get(root, flags[i]);
        if (v && !json_is_null(v) && !json_is_boolean(v))
            BAD("%s: \"%s\" is not true or false", path, flags[i]);
    }
    c->use_rslora = json_is_true(json_object_get(root, "use_rslora"));
    if (json_is_true(json_object_get(root, "use_dora")))
        BAD("%s: use_dora: DoRA adapters are not supported", path);
    v = json_object_get(root, "bias");
    if (v && !json_is_null(v) && (!json_is_string(v) || strcmp(json_string_value(v), "none")))
        BAD("%s: \"bias\" other than \"none\" is not supported", path);
    /* alora_invocation_tokens (activated LoRA) and exclude_modules (below) would change which tokens or
     * modules the same lora_A/lora_B tensors adapt: not to be applied as plain LoRA; trainable_token_indices
     * (PEFT 0.15's trained embedding rows) would be an update icl does not apply */
    static const char *const unsupported[] = {"modules_to_save", "layers_to_transform", "layer_replication",
                                              "alora_invocation_tokens", "trainable_token_indices"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++) {
        v = json_object_get(root, unsupported[i]);
        if (v && !json_is_null(v))
            BAD("%s: \"%s\" is not supported", path, unsupported[i]);
    }
    static const char *const patterns[] = {"rank_pattern", "alpha_pattern"};
    for (size_t i = 0; i < 2; i++) {
        v = json_object_get(root, patterns[i]);
        if (v && !json_is_null(v) && (!json_is_object(v) || json_object_size(v)))
            BAD("%s: \"%s\" is not supported", path, patterns[i]);
    }
    v = json_object_get(root, "exclude_modules");
    if (v && !json_is_null(v) && (!json_is_array(v) || json_array_size(v)))
        BAD("%s: \"exclude_modules\" is not supported", path);
    v = json_object_get(root, "target_modules");
    if (json_is_array(v)) {
        size_t i;
        json_t *t;
        seen = json_object(); /* names so far: a list of a million names is no quadratic search */
        json_array_foreach(v, i, t)
        {
            const char *name = json_string_value(t);
            size_t n = json_string_length(t);
            if (!json_is_string(t) || !n)
                BAD("%s: target_modules[%zu] is not a module name", path, i);
            if (!json_object_getn(seen, name, n)) {
                json_object_setn_new(seen, name, n, json_null());
                push_target(c, name, n);
            }
        }
    } else if (json_is_string(v)) { /* PEFT: a string is a regular expression, or all-linear */
        if (strcmp(json_string_value(v), "all-linear"))
            BAD("%s: target_modules \"%s\": regular expressions are not supported", path, json_string_value(v));
        add_target(c, "all-linear", 10);
    } else {
        BAD("%s: target_modules is not a list of names", path);
    }
    if (c->n_targets == 0)
        BAD("%s: target_modules is empty", path);
    v = json_object_get(root, "base_model_name_or_path");
    if (v && !json_is_null(v) && !json_is_string(v))
        BAD("%s: base_model_name_or_path is not a string (a model folder or name, or null)", path);
    if (json_is_string(v) && json_string_length(v))
        c->base_model_name_or_path = xstrdup(json_string_value(v));
    rc = 0;
out:
#undef BAD
    if (rc)
        icl_lora_config_free(c);
    json_decref(seen);
    json_decref(root);
    return rc;
}

int icl_lora_read_config(const char *dir, icl_lora_config *c, char *err, size_t errsz)
{
    memset(c, 0, sizeof *c);
    char *path = icl_path_join(dir, "adapter_config.json");
    size_t n;
    int rc = -1;
    /* capped at 16 MiB; a FIFO never blocks (icl_read_file) */
    char *text = icl_read_file(path, 16u << 20, &n, err, errsz);
    struct stat st;
    if (!text && (errno == ENOENT || errno == ENOTDIR)) { /* name what the folder is not, not a missing file */
        const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
        icl_file_kind k = icl_sniff_file(dir);
        char *mc = icl_path_join(dir, "config.json");
        int model = access(mc, F_OK) == 0;
        free(mc);
        icl_seterr(err, errsz, "%s: %s", dir,
                   stat(dir, &st) != 0 ? "no such adapter folder"
                   : S_ISDIR(st.st_mode) && model
                       ? "a model folder (config.json), not a LoRA adapter folder (adapter_config.json and "
                         "adapter_model.safetensors)"
                   : S_ISDIR(st.st_mode) ? "not a LoRA adapter folder (no adapter_config.json)"
                   : k == ICL_KIND_GGUF ? "a GGUF file, not a LoRA adapter folder: adapters are read in PEFT's "
                                          "format (a folder of adapter_config.json and adapter_model.safetensors); "
                                          "a llama.cpp LoRA GGUF is written from one (icl-convert), not read"
                   : k == ICL_KIND_ADAPTER_CONFIG || k == ICL_KIND_SAFETENSORS || !strcmp(base, "adapter_config.json")
                       ? "a file of a LoRA adapter folder: give the folder that holds it"
                       : "not a LoRA adapter folder (a file)");
    }
    if (text)
        rc = icl_lora_parse_config(text, n, path, c, err, errsz);
    free(text);
    free(path);
    return rc;
}

char *icl_lora_config_json(const icl_lora_config *c, int fan_in_fan_out)
{
    /* adapter_config.json: PEFT 0.13.2's LoraConfig.to_dict() keys, in its order */
    json_t *o = json_object();
    json_object_set_new(o, "alpha_pattern", json_object());
    json_object_set_new(o, "auto_mapping", json_null());
    json_object_set_new(o, "base_model_name_or_path",
                        c->base_model_name_or_path ? json_string(c->base_model_name_or_path) : json_null());
    json_object_set_new(o, "bias", json_string("none"));
    json_object_set_new(o, "fan_in_fan_out", json_boolean(fan_in_fan_out));
    json_object_set_new(o, "inference_mode", json_true());
    json_object_set_new(o, "init_lora_weights", json_true());
    json_object_set_new(o, "layer_replication", json_null());
    json_object_set_new(o, "layers_pattern", json_null());
    json_object_set_new(o, "layers_to_transform", json_null());
    json_object_set_new(o, "loftq_config", json_object());
    if (c->lora_alpha == floor(c->lora_alpha) && fabs(c->lora_alpha) < 1e15)
        json_object_set_new(o, "lora_alpha", json_integer((json_int_t)c->lora_alpha));
    else
        json_object_set_new(o, "lora_alpha", json_real(c->lora_alpha));
    json_object_set_new(o, "lora_dropout", json_real(c->lora_dropout));
    json_object_set_new(o, "megatron_config", json_null());
    json_object_set_new(o, "megatron_core", json_string("megatron.core"));
    json_object_set_new(o, "modules_to_save", json_null());
    json_object_set_new(o, "peft_type", json_string("LORA"));
    json_object_set_new(o, "r", json_integer(c->r));
    json_object_set_new(o, "rank_pattern", json_object());
    json_object_set_new(o, "revision", json_null());
    json_t *tm = json_array();
    for (int i = 0; i < c->n_targets; i++)
        json_array_append_new(tm, json_string(c->target_modules[i]));
    if (c->n_targets == 1 && !strcmp(c->target_modules[0], "all-linear")) {
        json_decref(tm);
        tm = json_string("all-linear");
    }
    json_object_set_new(o, "target_modules", tm);
    json_object_set_new(o, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(o, "use_dora", json_false());
    json_object_set_new(o, "use_rslora", json_boolean(c->use_rslora));
    /* the reals with the fewest digits that read back as the same double
     * (0.05, as PEFT's json.dump writes it, not 0.050000000000000003) */
    int prec = shortest_digits(c->lora_dropout), pa = shortest_digits(c->lora_alpha);
    char *txt = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(pa > prec ? pa : prec));
    json_decref(o);
    size_t len = strlen(txt);
    txt = xrealloc(txt, len + 2);
    txt[len] = '\n';
    txt[len + 1] = 0;
    return txt;
}


char *icl_lora_parse_spec(const char *spec, double *scale, char *err, size_t errsz)
{
    *scale = 1;
    const char *c = strrchr(spec, ':');
    double v;
    if (c && c != spec && !parse_double(c + 1, &v)) {
        if (!isfinite(v)) {
            icl_seterr(err, errsz, "adapter %s: the scale is not a finite number", spec);
            return NULL;
        }
        *scale = v;
        return xstrndup(spec, (size_t)(c - spec));
    }
    /* "DIR:abc" where DIR exists and the whole is no path: a bad scale, not
     * a missing folder named "DIR:abc" */
    struct stat st;
    if (c && c != spec && stat(spec, &st) != 0) {
        char *dir = xstrndup(spec, (size_t)(c - spec));
        int dir_exists = stat(dir, &st) == 0;
        free(dir);
        if (dir_exists) {
            icl_seterr(err, errsz, "adapter %s: the scale '%s' is not a number (DIR:SCALE, e.g. %.*s:0.5)", spec,
                       c + 1, (int)(c - spec), spec);
            return NULL;
        }
    }
    return xstrdup(spec);
}

