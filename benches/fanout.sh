#!/usr/bin/env bash
# Runs the fan-out and churn benchmark (benches/fanout.rs) with enough file descriptors: 5,000
# streams take one connection each, so about 5,000 descriptors in the bench process (the control
# plane) and as many in its child (the load client); the limit is per process, and the child
# inherits it. Arguments go to the bench:
#
#   benches/fanout.sh                                  # everything: fan-out 100/1,000/5,000, churn
#   benches/fanout.sh fanout --streams 1000 --variants sotw
#   benches/fanout.sh churn --duration 10              # a short churn while developing
#   benches/fanout.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."

want=16384
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    want=$hard
fi
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$want" ]; then
    ulimit -Sn "$want"
fi
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt 5200 ]; then
    echo "fanout.sh: only $(ulimit -Sn) file descriptors (hard limit $hard): 5,000 streams need" \
        "about 5,200 per process; raise the hard limit (limits.conf, or docker --ulimit nofile=16384)" >&2
fi
echo "$(uptime)"
exec cargo bench --bench fanout -- "$@"
