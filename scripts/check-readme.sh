#!/usr/bin/env bash
# The README's numbers that only a real run can check (.ci/run calls both):
#   scripts/check-readme.sh tests LOG   LOG: the output of `cargo test --release`; the README
#                                       and docs/testing.md must give its passed and ignored counts
#   scripts/check-readme.sh log LOG     LOG: the stdout of `wgsl-cnn --autotune off train --epochs 1`
#                                       on the full MNIST; its lines must be the README's sample
#                                       log's first epoch ("Epoch [1/1]" read as "Epoch [1/5]")
# The rest is checked by cargo test: tests/docs.rs (options, links, length), tests/bench.rs
# (the dispatch count), tests/results.rs (the results table).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
log=${2:-}
[ -f "$log" ] || { echo "usage: $0 tests|log LOG (LOG must be a file)" >&2; exit 2; }

case $what in
tests)
    # "test result: ok. 12 passed; 0 failed; 1 ignored; ..." per test binary.
    read -r passed ignored < <(awk '/^test result: /{for(i=1;i<=NF;i++){if($(i+1)~/^passed;?$/)p+=$i; if($(i+1)~/^ignored;?$/)g+=$i}} END{print p+0, g+0}' "$log")
    failed=$(awk '/^test result: /{for(i=1;i<=NF;i++) if($(i+1)~/^failed;?$/) f+=$i} END{print f+0}' "$log")
    [ "$passed" -gt 0 ] && [ "$failed" -eq 0 ] || { echo "error: $log: $passed passed, $failed failed: not a passing cargo test run" >&2; exit 1; }
    status=0
    for doc in README.md docs/testing.md; do
        text=$(tr '\n' ' ' < "$doc")   # a sentence may wrap
        said=$(grep -oE 'runs [0-9,]+ tests' <<< "$text" | head -1 | tr -dc '0-9' || true)
        said_ignored=$(grep -oE 'lists [0-9]+ more +as +ignored' <<< "$text" | head -1 | tr -dc '0-9' || true)
        if [ "$said" != "$passed" ] || [ "$said_ignored" != "$ignored" ]; then
            echo "error: $doc says ${said:-no number of} tests run and ${said_ignored:-no number} ignored; cargo test --release ran $passed and ignored $ignored" >&2
            status=1
        fi
    done
    [ $status -eq 0 ] && echo "README.md, docs/testing.md: $passed tests run, $ignored ignored, as cargo test --release says"
    exit $status
    ;;
log)
    want=$(awk '/^\$ cargo run --release -- --autotune off train$/{on=1; next} on && /^```/{exit} on' README.md | head -7)
    [ "$(printf '%s\n' "$want" | grep -c '^Epoch \[1/5\]\|^Accuracy')" -eq 7 ] || { echo "error: README.md: no sample log after '\$ cargo run --release -- --autotune off train'" >&2; exit 1; }
    got=$(grep -E '^(Epoch \[1/1\]|Accuracy of the network)' "$log" | sed 's#^Epoch \[1/1\]#Epoch [1/5]#')
    if [ "$got" != "$want" ]; then
        echo "error: the first epoch printed other lines than the README's sample log:" >&2
        diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") >&2 || true
        exit 1
    fi
    echo "README.md: the sample log's first epoch reproduced line for line"
    ;;
*)
    echo "usage: $0 tests|log LOG" >&2
    exit 2
    ;;
esac
