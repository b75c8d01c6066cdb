#!/usr/bin/env bash
# What each replay guard is worth: the same small replay with no skew, then with each guard left off.
# A tiny model (max_len 10) keeps it to about a minute a run, so the sequence-length skew is shown with a
# state of 5 recent items. Run from the repository root (flock on a shared machine); writes benchmarks/replay_skews/.
set -u
out=benchmarks/replay_skews
mkdir -p "$out"
common=(--dataset ml-100k --data ../shared/data/ml-100k --max-users 300 --config tiny --train-replayed-only --seed 2)
.venv/bin/streamrec replay "${common[@]}" --json "$out/none.json"
STREAMREC_FEATURES__LAST_N=5 .venv/bin/streamrec replay "${common[@]}" --skew last_n --json "$out/last_n.json"
for skew in user_features exploration mmr seen; do
  .venv/bin/streamrec replay "${common[@]}" --skew "$skew" --json "$out/$skew.json"
done
exit 0
