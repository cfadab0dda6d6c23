#!/usr/bin/env python3
"""Reference renderings of real chat templates, made with transformers' own
Jinja environment (transformers 4.46.3, jinja2 3.1: the sandbox with
trim_blocks, lstrip_blocks, loopcontrols, tojson(ensure_ascii=False) and the
globals raise_exception and strftime_now), exactly as apply_chat_template
calls it: render(messages=..., tools=None, documents=None,
add_generation_prompt=..., **special_tokens, **template_kwargs).

Run: /work/ref/venv/bin/python tests/data/chat/make_chat.py
Writes tests/data/chat/render.jsonl (one case a line: template, vars,
messages, add_generation_prompt, then text or error) and features.jsonl
(small templates exercising one construct each, rendered the same way).
The template texts are in templates/ (sources in templates/SOURCES).
"""
import json, os, sys
from transformers.utils.chat_template_utils import _compile_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))

MODELS = {  # template file -> special tokens as the model's tokenizer_config.json has them
    'smollm2': {'bos_token': '<|im_start|>', 'eos_token': '<|im_end|>'},
    'qwen3': {'bos_token': None, 'eos_token': '<|im_end|>'},
    'qwen2.5': {'bos_token': None, 'eos_token': '<|im_end|>'},
    'llama-3.1': {'bos_token': '<|begin_of_text|>', 'eos_token': '<|eot_id|>'},
    'llama-3.2': {'bos_token': '<|begin_of_text|>', 'eos_token': '<|eot_id|>'},
    'llama-3.3': {'bos_token': '<|begin_of_text|>', 'eos_token': '<|eot_id|>'},
    'mistral-nemo': {'bos_token': '<s>', 'eos_token': '</s>'},
    'mistral-v0.3': {'bos_token': '<s>', 'eos_token': '</s>'},
    'gemma-2': {'bos_token': '<bos>', 'eos_token': '<eos>'},
    'phi-3.5': {'bos_token': '<s>', 'eos_token': '<|endoftext|>'},
    'deepseek-r1-distill': {'bos_token': '<｜begin▁of▁sentence｜>', 'eos_token': '<｜end▁of▁sentence｜>'},
}

def U(c): return {'role': 'user', 'content': c}
def A(c): return {'role': 'assistant', 'content': c}
def S(c): return {'role': 'system', 'content': c}

CONVS = {
    'one': [U('What is the capital of France?')],
    'sys': [S('You are terse.'), U('Name a primary colour.')],
    'multi': [U('Hi!'), A('Hello. How can I help?'), U('Add 2 and 3.'), A('2 + 3 = 5.')],
    'sys-multi': [S('  You answer in French.  '), U('Good morning'), A('Bonjour !'),
                  U('And good night?'), A('Bonne nuit !')],
    'unicode': [U('Traduis « cœur » en 日本語, s’il te plaît 🙂'), A('心 (kokoro) — « cœur ».\n'),
                U('Et "naïve"?\tMerci')],
    'think': [U('2+2?'), A('<think>\nSimple sum.\n</think>\n\n4'), U('3+3?'),
              A('<think>\nAgain.\n</think>\n\n6')],
    'spaces': [U('  padded question \n'), A('\n answer with spaces  ')],
}

def render(tmpl, vars_, messages, agp):
    ct = _compile_jinja_template(tmpl)
    try:
        text = ct.render(messages=messages, tools=None, documents=None,
                         add_generation_prompt=agp, **vars_)
        return {'text': text}
    except Exception as e:  # TemplateError from raise_exception, etc.
        return {'error': str(e)}

def main():
    out = open(os.path.join(HERE, 'render.jsonl'), 'w', encoding='utf-8')
    for name, toks in MODELS.items():
        tmpl = open(os.path.join(HERE, 'templates', name + '.jinja'), encoding='utf-8').read()
        for cname, conv in CONVS.items():
            for agp in (False, True):
                vars_ = dict(toks)
                if name.startswith('llama'):
                    vars_['date_string'] = '26 Jul 2024'
                if name == 'qwen3' and cname == 'think' and agp:
                    vars_['enable_thinking'] = False
                case = {'template': name, 'conv': cname, 'vars': vars_, 'messages': conv,
                        'add_generation_prompt': agp}
                case.update(render(tmpl, vars_, conv, agp))
                out.write(json.dumps(case, ensure_ascii=False) + '\n')
    out.close()

    feat = open(os.path.join(HERE, 'features.jsonl'), 'w', encoding='utf-8')
    for tmpl, vars_ in FEATURES:
        case = {'template': tmpl, 'vars': vars_}
        try:
            case['text'] = _compile_jinja_template(tmpl).render(**vars_)
        except Exception as e:
            case['error'] = str(e)
        feat.write(json.dumps(case, ensure_ascii=False) + '\n')
    feat.close()

M = {'messages': [{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': 'U1'},
                  {'role': 'assistant', 'content': 'A1'}, {'role': 'user', 'content': 'U2'}]}
FEATURES = [
    ('{{ 1 + 2 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 7 / 2 }}|{{ 6 / 2 }}', {}),
    ('{{ 1.5 }}|{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1e16 }}|{{ 1.0e-5 }}|{{ 3.0 }}|{{ 2.5 * 2 }}|{{ -0.0 }}|{{ 1/3 }}', {}),
    ('{{ "a" ~ 1 ~ none ~ true }}|{{ "ab" * 3 }}|{{ [1,2] + [3] }}', {}),
    ('{{ none }}|{{ true }}|{{ false }}|{{ undefined_var }}|{{ [1, "a", none, true, 1.5] }}|{{ {"k": "v", "n": 1} }}', {}),
    ("{{ 'it\\'s' }}|{{ \"q\\\"q\" }}|{{ 'a\\nb\\tc\\\\d' }}|{{ 'caf\\u00e9' }}", {}),
    ('{{ "hello world"[1:] }}|{{ "hello"[::-1] }}|{{ "hello"[-1] }}|{{ [1,2,3,4,5][1:4:2] }}|{{ [1,2,3][-2:] }}|{{ "abc"[5:] }}', {}),
    ('{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }} {% endfor %}', M),
    ('{% for m in messages if m.role != "system" %}{{ loop.index }}{{ m.content }}{% if loop.last %}!{% endif %}{% endfor %}', M),
    ('{% for m in messages %}{% if m.role == "assistant" %}{% break %}{% endif %}{{ m.content }}{% endfor %}|{% for m in messages %}{% if loop.first %}{% continue %}{% endif %}{{ m.content }}{% endfor %}', M),
    ('{% for x in [] %}x{% else %}empty{% endfor %}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for a, b in [[1,2],[3,4]] %}{{ a+b }}{% endfor %}', {'d': {'b': 1, 'a': 2}}),
    ('{% set ns = namespace(n=0, s="") %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }} {{ ns.s }}', {}),
    ('{% set x = 1 %}{% for i in [1,2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}', {}),
    ('{% macro f(a, b="B", c=none) %}[{{ a }}{{ b }}{{ c }}]{% endmacro %}{{ f(1) }}{{ f(1, 2) }}{{ f("x", c=3) }}', {}),
    ('{% if x is defined %}d{% elif y is none %}n{% else %}e{% endif %}|{{ x is undefined }}|{{ y is none }}|{{ "s" is string }}|{{ {} is mapping }}|{{ [] is iterable }}|{{ "" is iterable }}|{{ 1 is number }}|{{ 1.5 is number }}|{{ true is boolean }}|{{ false is false }}|{{ true is true }}|{{ 3 is integer }}|{{ 3.0 is float }}|{{ [] is sequence }}|{{ 1 is odd }}|{{ 4 is even }}|{{ 4 is divisibleby 2 }}', {'y': None}),
    ('{{ "a" == "a" }}{{ 1 == 1.0 }}{{ 1 != 2 }}{{ 1 < 2 }}{{ "b" > "a" }}{{ 2 >= 2 }}{{ "a" in "cat" }}{{ 2 in [1,2] }}{{ "k" in {"k":1} }}{{ 3 not in [1] }}{{ not true }}{{ true and false }}{{ 0 or "x" }}{{ "" or [] }}{{ 1 if false else 2 }}{{ "v" if true }}', {}),
    ('{{ "  hi  " | trim }}|{{ "xxhixx" | trim("x") }}|{{ "Hello World" | upper }}|{{ "Hello" | lower }}|{{ "hello wORLD foo-bar" | title }}|{{ "hello WORLD" | capitalize }}|{{ "aaa" | replace("a", "b", 2) }}|{{ [1,2,3] | join(", ") }}|{{ "abc" | list }}|{{ [3,1] | first }}|{{ [3,1] | last }}|{{ "abc" | length }}|{{ {"a":1} | count }}', {}),
    ('{{ x | default("D") }}|{{ none | default("D") }}|{{ "" | default("D", true) }}|{{ x | d("E") }}|{{ 42 | string }}|{{ "12" | int + 1 }}|{{ "x" | int }}|{{ 3.7 | int }}|{{ "2.5" | float }}|{{ [1,2,1,3] | unique | list }}|{{ [1,2,3] | reverse | list }}|{{ "abc" | reverse }}|{{ [3,1,2] | sort | list }}|{{ [1,2,3] | sum }}|{{ [1,5,3] | max }}|{{ [4,2] | min }}', {}),
    ('{{ messages | selectattr("role", "equalto", "user") | list | length }}|{{ messages | rejectattr("role", "eq", "user") | map(attribute="content") | join(",") }}|{{ messages | map(attribute="role") | list }}|{{ messages | selectattr("content") | list | length }}|{{ [1,2,3,4] | select("odd") | list }}|{{ [1,2] | reject("even") | list }}|{{ ["a","b"] | map("upper") | join }}', M),
    ('{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ ["é", "<a>&\'", 1.5, none, true] | tojson }}|{{ {"b": 1, "a": [1, {"c": 2}]} | tojson(indent=4) }}|{{ "x" | tojson }}|{{ {} | tojson(indent=2) }}|{{ [] | tojson(indent=2) }}', {'d': {'name': 'f', 'args': {'q': 'ü'}}}),
    ('{{ " a b ".strip() }}|{{ "xxaxx".lstrip("x") }}|{{ "xxaxx".rstrip("x") }}|{{ "a,b,,c".split(",") }}|{{ " a  b ".split() }}|{{ "a b c".split(" ", 1) }}|{{ "hello".startswith("he") }}|{{ "hello".endswith(("lo", "x")) }}|{{ "aXa".replace("a", "b") }}|{{ "Ab".upper() }}{{ "Ab".lower() }}|{{ "hello world".title() }}|{{ "abc".find("c") }}|{{ "{} and {}".format(1, "b") }}|{{ "a-b".count("-") }}|{{ "hi".capitalize() }}|{{ "  x".isspace() }}|{{ "abc".isalpha() }}|{{ "12".isdigit() }}', {}),
    ('{{ d.items() | list }}|{{ d.get("a") }}|{{ d.get("z", "Z") }}|{{ d.get("z") }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d["a"] }}|{{ d.a }}|{{ d.zz is defined }}|{{ d | items | list }}|{{ d | dictsort }}', {'d': {'a': 1, 'b': [2]}}),
    ('{{- "  a" }} {{ "b" -}}  \n  c  {#- comment -#}  d {#- x #}\n  {% if true -%}\n   e\n  {%- endif %}\nf\n    {% if true %}\n  g\n    {% endif %}\nh{% raw %}{{ raw }}{% endraw %}', {}),
    ('{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = (1, 2) %}{{ t }}{{ t[0] }}|{{ (1,) }}|{{ () }}{% set l = [1, 2,] %}{{ l }}', {}),
    ('{% set s %}block {{ 1 + 1 }}{% endset %}[{{ s }}]{% generation %}G{{ s }}{% endgeneration %}', {}),
    ('{{ raise_exception("Bad role: " ~ r) }}', {'r': 'tool'}),
    ('{{ x.y }}', {}),
    ('{{ messages[10] }}|{{ d.missing }}|{{ d["missing"] }}|{{ d.missing is defined }}|{{ (d.missing or "alt") }}', {'messages': [1], 'd': {}}),
    ('{{ 1 + "a" }}', {}),
    ('{% if %}', {}),
    ('{{ "abc" | nofilter }}', {}),
    ('{{ 10 / 0 }}', {}),
    ('{{ [1,2] == [1,2] }}{{ {"a":1} == {"a":1} }}{{ none == none }}{{ x == none }}{{ 1 == true }}{{ "1" == 1 }}', {}),
    ('{{ "%s-%d" % ("a", 3) }}|{{ "%05.2f" % 3.14159 }}|{{ "x=%r" % "q" }}|{{ 1.0 | round }}|{{ 2.567 | round(1) }}|{{ -3 | abs }}|{{ 1234567890123456789 }}|{{ 2 ** 62 }}|{{ 10 ** 18 / 3 }}|{{ 0.000123 }}|{{ 123456789.123 }}|{{ 1e-7 }}|{{ 1.5e300 * 1e10 }}', {}),
    ('{% for i in range(3) %}{{ i }}{% endfor %}|{{ range(2, 8, 2) | list }}|{{ [1,2,3][1] }}|{{ "%.3f" | format(2.0) }}|{{ [[1,2],[3]] | map("length") | list }}|{{ "a\\nb" | indent(2) }}|{{ "x" | center(5) }}|{{ "<&>" | e }}|{{ "<b>" | safe }}|{{ "k" | wordcount }}', {}),
    ('{% set m = messages[0] %}{{ m["role"] }}{{ m.content | upper }}{% if m.tool_calls is defined and m.tool_calls %}T{% endif %}{{ m.get("role") }}{{ "tool_calls" in m }}', M),
    ('{% for k, v in d | dictsort %}{{ k }}{{ v }}{% endfor %}{% for x in d %}{{ x }}{% endfor %}{{ d | length }}{% for c in "ab" %}{{ c }}{{ loop.cycle("x", "y") }}{% endfor %}{% for x in [1,2] %}{{ loop.previtem }}{{ loop.nextitem }}{% endfor %}', {'d': {'z': 1, 'a': 2}}),
    ('{{ messages[-1].content }}{{ messages[1:] | length }}{% set messages = messages[1:] %}{{ messages[0].role }}', M),
    ('{{ "%s" | format(none) }}|{{ none | string }}|{{ [none] | join(",") }}|{{ true | string | upper }}|{{ 1.0 | string }}|{{ [1.0, 2] | join }}|{{ {"a": none} }}|{{ "\'" ~ [\'\\\'\'] }}|{{ ["a\\"b"] }}', {}),
]

# Templates may not modify lists and dicts (transformers uses jinja2's ImmutableSandboxedEnvironment).
FEATURES += [
    ('{% set l = [] %}{% for m in messages %}{% set _ = l.append(m.role) %}{% endfor %}{{ l }}|'
     '{% set x = [1, 2] %}{{ x.extend([3, 4]) }}{{ x }}{{ x.pop() }}{{ x.pop(0) }}{{ x }}'
     '{% set _ = x.insert(0, "a") %}{% set _ = x.insert(-1, "b") %}{% set _ = x.insert(99, "c") %}{{ x }}|'
     '{% set d = {"a": 1} %}{% set _ = d.update({"b": 2}, c=3) %}{% set _ = d.update(a=0) %}{{ d }}|'
     '{% set y = [1] %}{% set _ = y.extend(y) %}{{ y }}', M),
    ('{% set d = {"a": 1} %}{% set _ = d.update({"b": 2}) %}{{ d }}', {}),
    ('{{ [].pop() }}', {}),
    ("[{{ '' * 100000000000 }}|{{ [] * 100000000000 }}|{{ 'ab' * 0 }}|{{ [1] * -2 }}|{{ 3 * 'x' }}|{{ (1,) * 2 }}]", {}),
    ('{{ (1, 2).append(3) }}', {}),
]

# Scoping and loop corner cases.
FEATURES += [
    ('{% for a in [1, 2] %}{% set outer = loop %}{% for b in "xy" %}{{ outer.index }}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{% endfor %}', {}),
    ('{% set x = 5 %}{% macro m(a, b=a * 2, c=x) %}{{ a }},{{ b }},{{ c }};{% endmacro %}{{ m(1) }}{{ m(1, c=0) }}{% set x = 7 %}{{ m(2) }}', {}),
    ('{% for i in range(3) %}{% if i == 1 %}{% set y = "one" %}{% endif %}[{{ y }}]{% endfor %}[{{ y }}]', {}),
    ('{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == "assistant" and not ns.found %}{% set ns.found = true %}first:{{ loop.index0 }}{% endif %}{% endfor %}{{ ns.found }}', M),
    ('{%- for m in messages -%}\n  {%- if loop.first and m.role != "system" %}S{% endif -%}\n  {{ m.role[0] | upper }}\n{%- endfor %}\n', M),
    ('{{ messages | map(attribute="content") | select("equalto", "U1") | list }}{{ messages | selectattr("role", "in", ["user", "system"]) | map(attribute="content") | join("+") }}', M),
    ('{% if messages[0].role == "system" %}{% set sys = messages[0].content %}{% set rest = messages[1:] %}{% else %}{% set rest = messages %}{% endif %}{{ sys | default("none") }}/{{ rest | length }}/{{ rest[0].content if rest else "" }}', M),
    ('{{ "a" if none else "b" }}{{ "c" if undefined_thing is not defined }}{{ (1, 2) == (1, 2) }}{{ [1, 2] != [1, 2] }}{{ "x" ~ 1.0 ~ 2 }}{{ 10 // 3 * 3 + 10 % 3 }}{{ -2 ** 2 }}{{ 2 ** -1 }}', {}),
]

# A tool-calling template (llama.cpp's Phi-4-mini variant) with tools and tool calls.
_PHI4 = open(os.path.join(HERE, 'templates', 'phi-4-mini-llamacpp.jinja'), encoding='utf-8').read()
_TOOLS = [{'type': 'function', 'function': {'name': 'get_weather', 'description': 'Weather of a city, in °C',
                                            'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}},
                                                           'required': ['city']}}}]
_TOOLCHAT = [{'role': 'system', 'content': 'Use tools.'}, {'role': 'user', 'content': 'Weather in Zürich?'},
             {'role': 'assistant', 'content': None, 'tool_calls': [{'type': 'function', 'function':
                 {'name': 'get_weather', 'arguments': {'city': 'Zürich'}}}]},
             {'role': 'tool', 'content': '{"temp": 21.5}'}, {'role': 'assistant', 'content': '21.5 °C.'}]
FEATURES += [
    (_PHI4, {'messages': _TOOLCHAT, 'tools': _TOOLS, 'add_generation_prompt': False, 'eos_token': '<|endoftext|>'}),
    (_PHI4, {'messages': _TOOLCHAT[1:3], 'tools': _TOOLS, 'add_generation_prompt': True, 'eos_token': '<|endoftext|>'}),
    (_PHI4, {'messages': _TOOLCHAT[1:2], 'tools': None, 'add_generation_prompt': True, 'eos_token': '<|endoftext|>'}),
]

# Mistral Small 3.1: tools, tool calls with ids, tool results, content blocks.
_MS31 = open(os.path.join(HERE, 'templates', 'mistral-small-3.1.jinja'), encoding='utf-8').read()
_MSCHAT = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Weather in Zürich?'},
           {'role': 'assistant', 'tool_calls': [{'id': 'call_abc123456789', 'type': 'function', 'function':
               {'name': 'get_weather', 'arguments': {'city': 'Zürich'}}}]},
           {'role': 'tool', 'tool_call_id': 'call_abc123456789', 'content': {'temp': 21.5}},
           {'role': 'assistant', 'content': '21.5 °C.'},
           {'role': 'user', 'content': [{'type': 'text', 'text': 'And this? '}, {'type': 'image'}]}]
FEATURES += [
    (_MS31, {'messages': _MSCHAT, 'tools': _TOOLS, 'bos_token': '<s>', 'eos_token': '</s>'}),
    (_MS31, {'messages': _MSCHAT, 'tools': None, 'bos_token': '<s>', 'eos_token': '</s>'}),
    (_MS31, {'messages': _MSCHAT[:2] + [_MSCHAT[4]], 'bos_token': '<s>', 'eos_token': '</s>'}),
    (_MS31, {'messages': [_MSCHAT[0], _MSCHAT[1], _MSCHAT[1]], 'bos_token': '<s>', 'eos_token': '</s>'}),
]

if __name__ == '__main__':
    main()
