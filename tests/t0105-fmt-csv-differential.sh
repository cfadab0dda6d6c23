#!/bin/sh
# icl-fmt's CSV reading against Python's csv module on random hostile CSV
# (tests/data/fmt/csv_differential.py): every field equal, error lines equal.
. "$(dirname "$0")/lib.sh"
if command -v python3 >/dev/null; then
    test_expect_success 'random CSV: records and error lines equal to Python csv' '
        python3 "$DATA/fmt/csv_differential.py" 1 60 30 "$TEST_TMP"
    '
    test_expect_success 'random CSV, larger files (several 256 KiB runs of lines)' '
        python3 "$DATA/fmt/csv_differential.py" 2 3 2000 "$TEST_TMP"
    '
    test_expect_success 'random TSV: records and error lines equal to Python csv (TAB)' '
        python3 "$DATA/fmt/csv_differential.py" 3 40 30 "$TEST_TMP" tsv
    '
else
    test_skip 'random CSV against Python csv' 'no python3'
fi
test_done
