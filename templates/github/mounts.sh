#!/usr/bin/env bash
# The cacheport action's cache mounts (its `mounts` input): `cacheport mounts restore` before the build
# (mode restore), `cacheport mounts save` after a successful one (mode save), for the Dockerfile, target and
# build arguments the build uses, with what happened to each mount in the log and the job summary. It never
# fails the job: every problem is a warning annotation.
#   CLI                        the cacheport to run
#   MODE                       restore or save
#   INPUT_CONTEXT, INPUT_FILE, INPUT_TARGET, INPUT_BUILD_ARGS (one NAME=VALUE a line): the build's
#   INPUT_BUILDER              the builder the action made; empty: $BUILDX_BUILDER, else the current one
#   INPUT_MOUNTS_HELPER_IMAGE  the helper builds' image; empty: the config's, else cacheport's default
#   and plan-flags.sh's INPUT_* (the same plan as the cache flags)
set -uo pipefail
case "$MODE" in
  restore | save) ;;
  *) echo "::warning title=cacheport::mode: '$MODE' is neither restore nor save; cache mounts left alone"; exit 0 ;;
esac
source "$(dirname "${BASH_SOURCE[0]}")/plan-flags.sh"
args=(mounts "$MODE" "${INPUT_CONTEXT:-.}" ${plan_flags[@]+"${plan_flags[@]}"})
if [[ -n "$INPUT_FILE" ]]; then args+=(--file "$INPUT_FILE"); fi
if [[ -n "$INPUT_TARGET" ]]; then args+=(--target "$INPUT_TARGET"); fi
if [[ -n "$INPUT_BUILDER" ]]; then args+=(--builder "$INPUT_BUILDER"); fi
while IFS= read -r line; do
  line="${line#"${line%%[![:space:]]*}"}"
  if [[ -n "$line" ]]; then args+=(--build-arg "$line"); fi
done <<< "$INPUT_BUILD_ARGS"
if [[ -n "$INPUT_MOUNTS_HELPER_IMAGE" ]]; then export CACHEPORT_MOUNTS__HELPER_IMAGE="$INPUT_MOUNTS_HELPER_IMAGE"; fi
stderr="$RUNNER_TEMP/cacheport-mounts.stderr"
status=0
"$CLI" "${args[@]}" 2> "$stderr" || status=$?
# Errors too become warnings: the cache mounts only ever make a build faster.
sed -E 's/^cacheport: (warning|error): (.*)$/::warning title=cacheport::\2/' "$stderr" >&2
said=$(sed -n -E 's/^cacheport: (mount .*)$/\1/p' "$stderr")  # one line per mount: what happened to it
if [[ -n "$said" && -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
  printf '### Cache mounts: %s\n\n```text\n%s\n```\n' "$MODE" "$said" >> "$GITHUB_STEP_SUMMARY"
fi
rm -f "$stderr"
if [[ "$status" != 0 ]]; then
  echo "::warning title=cacheport::cache mounts: \`cacheport mounts $MODE\` exited with $status; the build goes on without them"
fi
exit 0
