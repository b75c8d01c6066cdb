#!/usr/bin/env bash
# What each replay guard is worth: the same small replay with no skew, then with each guard left off.
# Run from the repository root (wrap in flock on a shared machine); writes benchmarks/replay_skews/*.json.
set -u
out=benchmarks/replay_skews
mkdir -p "$out"
common=(--dataset ml-100k --data ../shared/data/ml-100k --max-users 200 --config default --train-replayed-only --seed 2)
.venv/bin/streamrec replay "${common[@]}" --json "$out/none.json"
for skew in user_features last_n exploration mmr seen; do
  .venv/bin/streamrec replay "${common[@]}" --skew "$skew" --json "$out/$skew.json"
done
exit 0
