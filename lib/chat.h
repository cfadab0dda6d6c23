/* chat.h - a model's own chat template: loading, rendering conversations,
 * and splitting a rendered conversation into context and target segments.
 *
 * A chat template is the Jinja program Hugging Face models ship
 * (tokenizer_config.json "chat_template", or chat_template.jinja beside it;
 * GGUF files carry it as tokenizer.chat_template).  Rendering follows
 * transformers' apply_chat_template: the variables are messages, tools and
 * documents (None), add_generation_prompt, the tokenizer's special tokens
 * (bos_token, eos_token, unk_token, pad_token as tokenizer_config.json
 * names them; missing ones are undefined) and user-set ones (date_string,
 * enable_thinking...).  See jinja.h for the language.
 *
 * Masking (icl_chat_segments) is TRL's assistant_only_loss without needing
 * {% generation %} in the template: every assistant message's turn, from
 * the end of the generation prompt through its end-of-turn marker, is a
 * target; all other text is context.  For assistant message i the target
 * starts where render(messages[:i], add_generation_prompt=true) ends, which
 * must be a prefix of the whole rendering, and ends after the first
 * end-of-turn marker (the eos_token or one of icl_chat_end_markers) after
 * the message's content.  Templates that rewrite earlier turns when more
 * follow (Mistral v0.3 moving the system prompt into the last user turn)
 * fail that prefix check and are refused with a message naming the turn,
 * never given wrong spans; templates that only drop text from finished
 * turns (Qwen3 dropping old reasoning) give the spans of the full
 * rendering's own text for those turns.  A template that marks its targets
 * with {% generation %} ... {% endgeneration %} (TRL's training templates)
 * gets exactly those spans instead.
 */
#ifndef ICL_CHAT_H
#define ICL_CHAT_H

#include <jansson.h>

#include "jinja.h"
#include "util.h"

/* End-of-turn texts recognised after an assistant message (besides the
 * eos_token): ChatML, Llama 3, Gemma, Phi-3, Mistral/Llama 2, DeepSeek. */
extern const char *const icl_chat_end_markers[];

typedef struct icl_chat icl_chat;

/* Load a chat template from path: a model folder (chat_template.jinja, else
 * tokenizer_config.json's "chat_template"), a tokenizer_config.json, or a
 * Jinja file (special tokens then come from a tokenizer_config.json in the
 * same folder, if any), or a GGUF file (tokenizer.chat_template, with the
 * BOS/EOS texts of its tokenizer.ggml.* metadata; by its magic whatever its
 * name).  A template given as a list of named templates uses the one named
 * "default".  A file not named .jinja without "{{" or "{%", or a template
 * that renders a user and an assistant message without either's text, is
 * "path: not a chat template ...".  A folder with neither file is an error
 * that names, for a PEFT adapter folder, its base_model_name_or_path (the
 * template is the base's).  Returns NULL with "path: what" in err. */
icl_chat *icl_chat_load(const char *path, char *err, size_t errsz);

/* A chat template from its text (name for messages); bos/eos may be NULL
 * (then undefined in the template). */
icl_chat *icl_chat_from_string(const char *tmpl, size_t n, const char *name, const char *bos, const char *eos,
                               char *err, size_t errsz);
void icl_chat_free(icl_chat *c);

/* Set a template variable from "NAME=VALUE": VALUE is JSON when it parses
 * as JSON (false, 3, "x", [..]), else the string itself.  Returns 0, or -1
 * with a message in err (no '=', empty name). */
int icl_chat_set_var(icl_chat *c, const char *spec, char *err, size_t errsz);
/* The template's special-token strings (NULL if not set). */
const char *icl_chat_bos(const icl_chat *c);
const char *icl_chat_eos(const icl_chat *c);
/* Limits for every render (default: jinja.h's defaults). */
void icl_chat_set_limits(icl_chat *c, const icl_jinja_limits *lim);

/* Normalise a conversation: an array of OpenAI {role, content} or
 * ShareGPT {from, value} messages (from: human/user, gpt/assistant/model,
 * system, tool) into a new array of {role, content} objects (other keys
 * kept).  Returns the array (caller decrefs), or NULL with a message. */
json_t *icl_chat_messages(const json_t *msgs, char *err, size_t errsz);

/* Render messages (normalised) with add_generation_prompt; appends to out.
 * Returns 0, or -1 with the template's error (raise_exception text...). */
int icl_chat_render(const icl_chat *c, const json_t *messages, int add_generation_prompt, icl_buf *out,
                    char *err, size_t errsz);

/* Split the rendering of messages (add_generation_prompt false) into
 * context/target segments: *prompts and *responses get new arrays of equal
 * length n >= 1 (one entry per assistant message), so that
 * prompts[0] + responses[0] + ... + responses[n-1] is the rendering up to
 * the end of the last assistant turn (the text after it is not trained on
 * and not returned).  Returns 0, or -1 with a message (no assistant
 * message, template error, turn not locatable). */
int icl_chat_segments(const icl_chat *c, const json_t *messages, json_t **prompts, json_t **responses, char *err,
                      size_t errsz);

#endif
