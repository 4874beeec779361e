#!/usr/bin/env bash
# A/B of the pipeline bench (and, with AB_FLIP=1, the weight-flip bench) between a base commit
# (A) and this working tree (B), on the same machine in the same run, alternating A, B, A, B...
# so that the machine's slow and fast phases hit both sides alike.
#
#   benches/ab.sh                     # A = bfdabba, 3 runs each, 10,000 Mappings
#   AB_REPS=5 benches/ab.sh           # more runs each (at least 3)
#   AB_BASE=<commit> benches/ab.sh    # another base
#   AB_FLIP=1 benches/ab.sh           # also the flip bench at 10,000 Mappings (needs `envoy`)
#
# Each side runs its own benches, built from its own tree: the bench code differs between
# commits (the crate's module paths moved). A is a detached worktree of AB_BASE at AB_BASE_DIR
# (default /work/ab-base), added if missing and refused if it holds another commit or local
# changes; B is the tree this script is in, uncommitted changes included. Each tree builds in
# its own target directory (`cargo bench --no-run`, the release profile); the bench binaries
# (and the canary-xds binary the flip bench starts) are copied out first, so nothing rebuilds
# between runs.
#
# Printed per run: p50 and p99 of the full rebuild, one changed file among the others (a
# weight, watcher paths) and the timeout change (watcher paths), as the bench prints them. Then
# per side the median of the runs' p50s and their spread (min-max), and B/A: the ratio of the
# medians and the min-max of the ratios of each A run to the B run after it. Raw outputs stay
# in AB_OUT (default target/ab/<time> in this tree).
set -euo pipefail

BASE=${AB_BASE:-bfdabba}
REPS=${AB_REPS:-3}
SIZE=${AB_SIZE:-10000}
BASE_DIR=${AB_BASE_DIR:-/work/ab-base}
FLIP=${AB_FLIP:-0}
FLIP_SIZE=${AB_FLIP_SIZE:-10000}
FLIPS=${AB_FLIPS:-200}

B_DIR=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
OUT=${AB_OUT:-$B_DIR/target/ab/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

if ((REPS < 3)); then
    echo "AB_REPS=$REPS: at least 3 runs each, or the spread means nothing" >&2
    exit 2
fi
base_rev=$(git -C "$B_DIR" rev-parse --verify "$BASE^{commit}")
if [[ ! -e $BASE_DIR ]]; then
    git -C "$B_DIR" worktree add --detach "$BASE_DIR" "$base_rev" >&2
fi
if [[ $(git -C "$BASE_DIR" rev-parse HEAD) != "$base_rev" ]]; then
    echo "$BASE_DIR holds $(git -C "$BASE_DIR" rev-parse --short HEAD), not $BASE" >&2
    exit 2
fi
if [[ -n $(git -C "$BASE_DIR" status --porcelain --untracked-files=no) ]]; then
    echo "$BASE_DIR has local changes; A must be the commit as it is" >&2
    exit 2
fi
b_rev=$(git -C "$B_DIR" rev-parse --short HEAD)
if [[ -n $(git -C "$B_DIR" status --porcelain --untracked-files=no) ]]; then
    b_rev="$b_rev + uncommitted changes"
fi

# Builds one tree's benches and copies out the executables: pipeline, propagation, canary-xds.
build() {
    local side=$1 dir=$2 benches=(--bench pipeline)
    ((FLIP)) && benches+=(--bench propagation)
    echo "building $side in $dir ..." >&2
    (cd "$dir" && cargo bench --no-run "${benches[@]}" --message-format=json-render-diagnostics) \
        >"$OUT/build-$side.json"
    python3 - "$OUT/build-$side.json" "$OUT" "$side" <<'EOF'
import json, shutil, sys
path, out, side = sys.argv[1:]
for line in open(path):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    name = m.get("target", {}).get("name")
    if m.get("reason") == "compiler-artifact" and m.get("executable") and \
            name in ("pipeline", "propagation", "canary-xds"):
        shutil.copy2(m["executable"], f"{out}/{side}-{name}")
EOF
    [[ -x $OUT/$side-pipeline ]] || { echo "no pipeline bench built for $side" >&2; exit 1; }
}
build A "$BASE_DIR"
build B "$B_DIR"

load() { cut -d' ' -f1-3 /proc/loadavg; }
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "A: $(git -C "$BASE_DIR" log -1 --format='%h %s' | cut -c1-90)"
echo "B: $b_rev ($B_DIR)"
echo "machine: $(nproc) CPUs, $model; load average $(load); $(date -u '+%F %T UTC')"
echo "pipeline bench at $SIZE Mappings, $REPS runs each, alternating A, B; raw output in $OUT"

# One line per (side, run, case): side run case p50 p99.
results=$OUT/results.tsv
: >"$results"
for ((i = 1; i <= REPS; i++)); do
    for side in A B; do
        dir=$B_DIR
        [[ $side == A ]] && dir=$BASE_DIR
        raw=$OUT/pipeline-$side-$i.txt
        before=$(load)
        (cd "$dir" && env -u ONLY_FULL -u ONLY_INCREMENTAL "$OUT/$side-pipeline" "$SIZE") >"$raw"
        awk -v side="$side" -v run="$i" '
            function p(label,   j, p50, p99) {
                for (j = 1; j <= NF; j++) {
                    if ($j == "p50") p50 = $(j + 1)
                    if ($j == "p99") p99 = $(j + 1)
                }
                printf "%s\t%s\t%s\t%s\t%s\n", side, run, label, p50, p99
            }
            /^full rebuild/ { p("full") }
            /^one changed file \(watcher paths\)/ { p("one-file") }
            /^one changed file \(a timeout, watcher paths\)/ { p("timeout") }
        ' "$raw" | tee -a "$results" | awk -v load="$before -> $(load)" '
            { line = line sprintf("  %s %s / %s ms", $3, $4, $5); side = $1; run = $2 }
            END { printf "%s run %s:%s  (load %s)\n", side, run, line, load }'
    done
done

if ((FLIP)); then
    command -v envoy >/dev/null || { echo "AB_FLIP=1 needs envoy on PATH" >&2; exit 1; }
    echo "flip bench at $FLIP_SIZE Mappings, $FLIPS flips, no baseline Envoy, $REPS runs each"
    for ((i = 1; i <= REPS; i++)); do
        for side in A B; do
            dir=$B_DIR
            [[ $side == A ]] && dir=$BASE_DIR
            raw=$OUT/flip-$side-$i.txt
            before=$(load)
            (cd "$dir" && "$OUT/$side-propagation" --case flip --count mappings \
                --flip-sizes "$FLIP_SIZE" --flips "$FLIPS" --canary-xds "$OUT/$side-canary-xds") \
                >"$raw" 2>"$raw.err"
            # The summary's flip row: case routes total-p50 total-p99 base.. x.. ours-p50 ...
            awk -v side="$side" -v run="$i" '
                /^== summary/ { s = 1 }
                s && $1 == "flip" {
                    printf "%s\t%s\tflip\t%s\t%s\n", side, run, $3, $4
                    printf "%s\t%s\tflip-ours\t%s\t-\n", side, run, $9
                }' "$raw" | tee -a "$results" | awk -v load="$before -> $(load)" '
                { line = line sprintf("  %s %s / %s ms", $3, $4, $5); side = $1; run = $2 }
                END { printf "%s run %s:%s  (load %s)\n", side, run, line, load }'
        done
    done
fi

echo "load average at the end: $(load)"
python3 - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cases = list(dict.fromkeys(r[2] for r in rows))
names = {"full": "full rebuild", "one-file": "one changed file (weight)",
         "timeout": "one changed file (timeout)", "flip": "flip, rename -> reply",
         "flip-ours": "flip, rename -> push"}
print("\np50 in ms: median of the runs [min-max]; B/A: ratio of medians [min-max of A_i -> B_i]")
print(f"  {'case':<28} {'A':>22} {'B':>22} {'B/A':>22}")
for case in cases:
    p50 = {s: {int(r[1]): float(r[3]) for r in rows if r[0] == s and r[2] == case}
           for s in "AB"}
    cell = {s: f"{statistics.median(v.values()):.2f} [{min(v.values()):.2f}-{max(v.values()):.2f}]"
            for s, v in p50.items()}
    ratios = [p50["B"][i] / p50["A"][i] for i in p50["A"] if i in p50["B"]]
    ratio = statistics.median(p50["B"].values()) / statistics.median(p50["A"].values())
    print(f"  {names.get(case, case):<28} {cell['A']:>22} {cell['B']:>22} "
          f"{f'{ratio:.3f} [{min(ratios):.3f}-{max(ratios):.3f}]':>22}")
EOF
