/* template.h - prompt templates: instruction/input/output -> prompt/response.
 *
 * A template turns the fields of one exchange into two texts: the prompt
 * (context, not trained on) and the response (the target).  The response
 * never contains any of the prompt part, and no EOS is added here: the
 * tokenizer appends its EOS after each response (doc/DESIGN.md, token lines).
 * Multi-turn chats render turn by turn; turn 0 carries the system text.
 *
 * Built-in templates ("user" below is instruction, plus "\n\n" and input
 * when input is not empty):
 *
 *  alpaca   Stanford Alpaca's two prompts, byte for byte from PROMPT_DICT in
 *           tatsu-lab/stanford_alpaca train.py: "prompt_input" when input is
 *           not empty, else "prompt_no_input"; response = output.  A system
 *           text replaces the first sentence(s) ("Below is ... request.").
 *           Later turns: "\n\n### Instruction:\n{user}\n\n### Response:".
 *  chatml   "<|im_start|>system\n{system}<|im_end|>\n" (only with a system
 *           text) "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n";
 *           response = output.  The <|im_end|> closing the answer is the EOS
 *           the tokenizer adds (Qwen2.5-Instruct and SmolLM2-Instruct use it
 *           as EOS); later turns start with "\n<|im_start|>user\n".
 *  llama2   "[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]" (the SYS
 *           block only with a system text; later turns "[INST] {user} [/INST]");
 *           response = " " + output, as Meta's chat format.  BOS and EOS are
 *           the tokenizer's.
 *  plain    "{system}\n\n" (if any) "{user}\n"; response = output; later
 *           turns start with "\n".
 *
 * Template files (see icl-fmt(1)): text with the placeholders {system}
 * {instruction} {input} {output}, and one marker line "%%" separating the
 * prompt part from the response part.  The newline ending the line before
 * the marker belongs to neither part, nor does the final newline of the
 * file.  {output} must appear in the response part exactly once and not in
 * the prompt part; any other text in braces is literal, except a word one
 * or two letters from a placeholder ({intruction}): an error.
 */
#ifndef ICL_TEMPLATE_H
#define ICL_TEMPLATE_H

#include <stddef.h>

#include "util.h"

/* Stanford Alpaca's texts, exact (without the format placeholders' braces
 * resolved: {instruction} and {input} stand where str.format_map puts them). */
extern const char icl_alpaca_prompt_input[];
extern const char icl_alpaca_prompt_no_input[];

typedef struct icl_template icl_template;

/* A counted string (need not be NUL-terminated). */
typedef struct {
    const char *s;
    size_t n;
} icl_str;

/* The fields of one exchange.  Missing fields are {NULL, 0} or {"", 0}. */
typedef struct {
    icl_str system, instruction, input, output;
} icl_tfields;

/* Largest template file read (bytes): a template is a few lines; the cap
 * makes /dev/zero an error, not an unbounded read. */
#define ICL_TEMPLATE_MAX_BYTES (16u << 20)

/* Load a template: a built-in name (alpaca, chatml, llama2, plain) or the
 * path of a template file.  Returns NULL with a message in err (e.g.
 * "tpl.txt:3: ...", "unknown template 'x'", "t: larger than N bytes") on
 * failure.  Free with icl_template_free. */
icl_template *icl_template_load(const char *name, char *err, size_t errsz);
/* Make a template from file text in memory (what icl_template_load reads);
 * name is used in messages.  The text must be UTF-8 without NUL bytes (its
 * text goes into every record); otherwise NULL with "name:LINE: ..." in err. */
icl_template *icl_template_parse(const char *text, size_t n, const char *name, char *err,
                                 size_t errsz);
void icl_template_free(icl_template *t);
/* 1 if the response is always exactly the output (alpaca, chatml, plain),
 * so a caller may use the output text without rendering it. */
int icl_template_response_is_output(const icl_template *t);
/* The name it was loaded by. */
const char *icl_template_name(const icl_template *t);

/* Render turn `turn` (0-based) of an exchange: appends the prompt text to
 * prompt and the response text to response (both NUL-terminated after;
 * response may be NULL to render the prompt only).  The system text is used
 * on turn 0 only. */
void icl_template_render(const icl_template *t, const icl_tfields *f, int turn, icl_buf *prompt,
                         icl_buf *response);

#endif
