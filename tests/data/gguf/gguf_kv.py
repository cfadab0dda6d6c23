#!/usr/bin/env python3
"""gguf_kv.py FILE [PREFIX]: a GGUF file's metadata, one "key type value" line
per key whose name starts with PREFIX (default: every key), in file order.
Arrays print as "[n] sha256-of-their-values" (strings joined by NUL, numbers
as repr), so two files' arrays compare by line.  Standard library only (the
tests run without bench-deps).  Format: ggml's docs/gguf.md, version 2 and 3."""
import hashlib
import struct
import sys

SIZE = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
NAME = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool", 8: "str", 9: "arr",
        10: "u64", 11: "i64", 12: "f64"}


def main():
    d = open(sys.argv[1], "rb").read()
    prefix = sys.argv[2] if len(sys.argv) > 2 else ""
    if d[:4] != b"GGUF":
        sys.exit("%s: not a GGUF file" % sys.argv[1])
    o = [8]

    def u(f):
        v = struct.unpack_from(f, d, o[0])[0]
        o[0] += struct.calcsize(f)
        return v

    def s():
        n = u("<Q")
        v = d[o[0]:o[0] + n].decode("utf-8", "surrogateescape")
        o[0] += n
        return v

    def val(t):
        if t == 8:
            return s()
        if t == 9:
            et, n = u("<I"), u("<Q")
            h = hashlib.sha256()
            for _ in range(n):
                h.update((val(et) if et == 8 else repr(val(et))).encode("utf-8", "surrogateescape") + b"\0")
            return "[%d %s] %s" % (n, NAME.get(et, et), h.hexdigest()[:16])
        return u(SIZE[t])

    u("<Q")  # tensor count
    for _ in range(u("<Q")):
        k = s()
        t = u("<I")
        v = val(t)
        if k.startswith(prefix):
            print(k, NAME.get(t, t), v if t != 8 or "\n" not in v else "sha256:" + hashlib.sha256(v.encode()).hexdigest()[:16])


main()
