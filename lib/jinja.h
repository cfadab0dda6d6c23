/* jinja.h - a Jinja2 subset interpreter for chat templates.
 *
 * Renders the chat templates Hugging Face models ship (tokenizer_config.json
 * "chat_template", chat_template.jinja, GGUF tokenizer.chat_template) the way
 * transformers' apply_chat_template does: jinja2's ImmutableSandboxedEnvironment with
 * trim_blocks=True, lstrip_blocks=True, the loopcontrols extension (break,
 * continue), keep_trailing_newline=False, a tojson filter that is Python's
 * json.dumps(ensure_ascii=False, sort_keys=False) and the globals
 * raise_exception(msg) and strftime_now(fmt).  Values print as Python's str()
 * (None, True, 1.5, 1e-05, ['a', 1], {'k': 'v'}).
 *
 * Language covered: {{ }}, {% %}, {# #}, whitespace control '-' and '+',
 * {% raw %}; if/elif/else; for (tuple targets, "if" filter, else, loop.index,
 * index0, revindex, revindex0, first, last, length, previtem, nextitem,
 * cycle()); break/continue; set (names, tuples, namespace attributes, block
 * set); macro (defaults, keyword arguments); {% generation %} (its spans in
 * the output are reported); literals (strings with Python escapes, ints,
 * floats, lists, tuples, dicts, true/false/none in either case); operators
 * + - * / // % ** ~, comparisons (chained), in, not in, and, or, not,
 * x if c else y, subscripts, slices [a:b:c], attributes; tests, filters and
 * the string/dict/list methods real templates call (see jinja.c for the
 * lists).  Anything else is an error that names the construct; as in the
 * immutable sandbox, methods that modify lists and dicts (append, pop,
 * update...) are refused.
 *
 * Templates are untrusted input: the interpreter has no file, environment
 * or process access (include/import/extends are refused), and every render
 * runs under limits (icl_jinja_limits) on output size, memory, work steps
 * and call depth; the parser bounds nesting depth.  Errors name the template,
 * line and column ("chat_template:3:17: unexpected 'endfor'"); a template's
 * raise_exception("...") message is the error text after the location.
 *
 * Missing variables, keys and attributes are jinja2's Undefined: falsy,
 * printed as '', iterable as empty; taking an attribute or item of it, or
 * doing arithmetic with it, is an error ("'x' is undefined").
 */
#ifndef ICL_JINJA_H
#define ICL_JINJA_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

#include "util.h"

typedef struct icl_jinja icl_jinja;

/* Limits of one render; a zero field takes its default. */
typedef struct {
    size_t max_output; /* bytes of rendered text (default 64 MiB) */
    size_t max_memory; /* bytes of values built while rendering (default 512 MiB) */
    long max_steps;    /* loop iterations + calls + list elements built + work of operations
                        * that grow with their input: 1 step per 64 bytes scanned or
                        * compared (16 where decoded code point by code point),
                        * per list element compared, per 16 dict keys searched
                        * (default 50M) */
    int max_depth;     /* nested macro calls (default 100) */
    time_t now;        /* the time strftime_now formats (local time); 0 = the clock */
} icl_jinja_limits;

/* A half-open byte range [start, end) of the rendered text. */
typedef struct {
    size_t start, end;
} icl_jinja_span;

/* Compile src[0..len) (UTF-8; CRLF and CR read as LF, one final newline
 * dropped, as jinja2).  name is used in error messages (copied).  Returns
 * the compiled template (free with icl_jinja_free), or NULL with a message
 * "name:line:col: ..." in err. */
icl_jinja *icl_jinja_parse(const char *src, size_t len, const char *name, char *err, size_t errsz);
void icl_jinja_free(icl_jinja *t);

/* Render t with the variables of the JSON object vars (may be NULL; strings,
 * numbers, booleans, null, arrays and objects map to Python's str, int,
 * float, bool, None, list and dict; object key order is kept).  lim may be
 * NULL for the defaults.  The text is appended to out.  When spans is not
 * NULL, *spans receives a malloc'd array of the output ranges written inside
 * {% generation %} blocks, in order (*nspans of them; the caller frees it).
 * Returns 0, or -1 with "name:line: message" in err and out unchanged. */
int icl_jinja_render(const icl_jinja *t, const json_t *vars, const icl_jinja_limits *lim,
                     icl_buf *out, icl_jinja_span **spans, size_t *nspans, char *err,
                     size_t errsz);

/* Python's repr() of a float ("0.1", "1e-05", "1e+20", "inf"), as str() and
 * json.dumps print it.  Writes a NUL-terminated string of at most 32 bytes
 * to buf and returns buf. */
char *icl_py_float_repr(double x, char buf[32]);

#endif
