#!/usr/bin/env bash
# The visionyard release pipeline (written by `visionyard deploy release`). Every step is one
# visionyard command and its exit code decides: the script stops at the first failure and exits
# with that command's code (8: the gate failed, 5: bad data, 7: tracking store unreachable,
# 12: training failed; see `visionyard --help`).
#
#   scripts/release.sh candidate          train -> register -> export -> gate vs production
#                                         -> canary (rollout start) or staging
#   scripts/release.sh production V MODE  after the approval: version V to production
#                                         (MODE canary: rollout promote; staging: promote)
#
# Settings: release/release.env (each value can be overridden from the environment). The
# tracking store comes from the environment as for any visionyard command
# (VISIONYARD_TRACKING__URI, MLflow credentials). In GitHub Actions the version and mode are
# written to $GITHUB_OUTPUT for the approval job.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source release/release.env
VY=${VY:-visionyard}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n==> %s\n' "$*"; }

output() {  # name=value for the next job (GitHub Actions) and for people
    printf 'release: %s\n' "$1"
    if [[ -n "${GITHUB_OUTPUT:-}" ]]; then printf '%s\n' "$1" >>"$GITHUB_OUTPUT"; fi
}

has_production() {  # 0: production holds a version; 1: none yet; else: the command's error
    local code=0
    "$VY" models show "$VY_MODEL@production" >"$WORK/show.out" 2>"$WORK/show.err" || code=$?
    if [[ $code -eq 4 ]]; then return 1; fi
    if [[ $code -ne 0 ]]; then cat "$WORK/show.err" >&2; exit "$code"; fi
}

candidate() {
    step "train on $VY_DATA"
    # shellcheck disable=SC2086  # VY_TRAIN_FLAGS is a list of flags
    "$VY" train --data "$VY_DATA" --no-progress $VY_TRAIN_FLAGS | tee "$WORK/train.out"
    local run_id version
    run_id=$(sed -n 's/^run id: //p' "$WORK/train.out")

    step "register run $run_id as $VY_MODEL"
    "$VY" register "$run_id" --name "$VY_MODEL" | tee "$WORK/register.out"
    version=$(sed -n 's/^registered .* version \([0-9][0-9]*\) .*/\1/p' "$WORK/register.out")
    output "version=$version"

    step "export $VY_MODEL/$version: $VY_VARIANTS"
    # shellcheck disable=SC2086
    "$VY" export "$VY_MODEL" "$version" --data "$VY_DATA" --variants "$VY_VARIANTS" $VY_EXPORT_FLAGS

    step "gate $VY_MODEL/$version against production ($VY_GATE)"
    "$VY" promote "$VY_MODEL" "$version" --to production --gate "$VY_GATE" --dry-run

    if [[ "$VY_CANARY" -gt 0 ]] && has_production; then
        step "canary: $VY_CANARY % of production's traffic to version $version"
        local policy=()
        if [[ -n "$VY_ROLLOUT_POLICY" ]]; then policy=(--policy "$VY_ROLLOUT_POLICY"); fi
        "$VY" rollout start "$VY_MODEL" "$version" --canary "$VY_CANARY" \
            --steps "$VY_CANARY_STEPS" "${policy[@]}"
        output "mode=canary"
    else
        step "staging: version $version"
        "$VY" promote "$VY_MODEL" "$version" --to staging --reason "release candidate"
        output "mode=staging"
    fi
}

production() {
    local version=${1:?usage: release.sh production VERSION MODE} mode=${2:-staging}
    if [[ "$mode" == canary ]]; then
        step "promote the canary of $VY_MODEL (version $version) through the gate"
        "$VY" rollout promote "$VY_MODEL"
    else
        step "promote $VY_MODEL/$version to production through the gate"
        "$VY" promote "$VY_MODEL" "$version" --to production --gate "$VY_GATE" \
            --reason "release approved"
    fi
}

case "${1:-}" in
    candidate) candidate ;;
    production) shift; production "$@" ;;
    *) echo "usage: $0 candidate | production VERSION [canary|staging]" >&2; exit 2 ;;
esac
