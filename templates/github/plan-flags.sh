# shellcheck shell=bash disable=SC2153  # INPUT_* come from the step's env
# Sourced, not run: the plan options of the cacheport action's inputs (INPUT_BACKEND, INPUT_KEY, INPUT_SET with
# one NAME=VALUE a line, INPUT_READ_ONLY, INPUT_CONFIG) as the array `plan_flags`, the same for `cacheport args`
# in the cacheport action and `cacheport report` in its report sub-action.
plan_flags=()
if [[ -n "$INPUT_BACKEND" ]]; then plan_flags+=(--backend "$INPUT_BACKEND"); fi
if [[ -n "$INPUT_KEY" ]]; then plan_flags+=(--key "$INPUT_KEY"); fi
while IFS= read -r line; do
  line="${line#"${line%%[![:space:]]*}"}"
  if [[ -n "$line" ]]; then plan_flags+=(--set "$line"); fi
done <<< "$INPUT_SET"
if [[ "$INPUT_READ_ONLY" == "true" ]]; then plan_flags+=(--read-only); fi
if [[ -n "$INPUT_CONFIG" ]]; then plan_flags+=(--config "$INPUT_CONFIG"); fi
