#!/usr/bin/env bash
# The cacheport action's builder (when its builder-driver input is set): a buildx builder running the given
# BuildKit image, buildkitd config and driver options, made once and reused by later jobs on the same runner.
# Its name is INPUT_BUILDER plus a digest of those settings, so changed settings make a new builder instead of
# reusing one that runs another BuildKit or config. The GitLab templates make theirs the same way.
#   INPUT_BUILDER_DRIVER       docker-container, kubernetes, remote, ...
#   INPUT_BUILDER              the name's first part
#   INPUT_BUILDKIT_IMAGE       the BuildKit image (docker-container and kubernetes only)
#   INPUT_BUILDKITD_CONFIG     the buildkitd.toml: its text, or a file's path
#   INPUT_BUILDER_DRIVER_OPTS  more --driver-opt values, split on spaces and lines
# Outputs `builder`, and sets BUILDX_BUILDER for the job's later steps.
set -euo pipefail
args=(--driver "$INPUT_BUILDER_DRIVER")
case "$INPUT_BUILDER_DRIVER" in
  docker-container | kubernetes) args+=(--driver-opt "image=$INPUT_BUILDKIT_IMAGE") ;;
esac
read -r -d '' -a opts <<< "$INPUT_BUILDER_DRIVER_OPTS" || true
for opt in ${opts[@]+"${opts[@]}"}; do args+=(--driver-opt "$opt"); done  # bash 3.2 (macOS): an empty array is unset
config=""
if [[ -f "$INPUT_BUILDKITD_CONFIG" ]]; then
  config=$INPUT_BUILDKITD_CONFIG
elif [[ -n "$INPUT_BUILDKITD_CONFIG" ]]; then
  config="$RUNNER_TEMP/cacheport-buildkitd.toml"
  printf '%s\n' "$INPUT_BUILDKITD_CONFIG" > "$config"
fi
digest=$({ printf '%s\n' "${args[@]}"; if [[ -n "$config" ]]; then cat "$config"; fi; } \
  | { sha256sum 2>/dev/null || shasum -a 256; } | cut -c1-12)  # macOS has only shasum
if [[ -n "$config" ]]; then args+=(--buildkitd-config "$config"); fi
builder="$INPUT_BUILDER-$digest"
if docker buildx inspect "$builder" >/dev/null 2>&1; then
  echo "cacheport: reusing the buildx builder $builder"
else
  echo "cacheport: creating the buildx builder $builder: ${args[*]}"
  # A job running next to this one on the same runner may create it first: then use that one.
  docker buildx create --name "$builder" "${args[@]}" || docker buildx inspect "$builder" >/dev/null
fi
echo "builder=$builder" >> "$GITHUB_OUTPUT"
echo "BUILDX_BUILDER=$builder" >> "$GITHUB_ENV"
