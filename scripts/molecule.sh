#!/usr/bin/env bash
# Runs `molecule test` for the role scenarios under molecule/ (all of them, or the ones named), from the repo root,
# with the project's venv first on PATH and its ansible.cfg. The scenarios use ports and folders of their own, so
# MOLECULE_JOBS of them (default 2) run at once, each into its log under .cache/molecule-logs/; a failed scenario's
# log is printed whole, and after a failure no further scenario starts.
#   scripts/molecule.sh                 # every scenario under molecule/
#   scripts/molecule.sh nginx_lb        # one scenario
#   MOLECULE_ARGS="--destroy=never" scripts/molecule.sh app_slot   # keep it up to poke at it, then `molecule destroy -s app_slot`
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$root/ansible.cfg"
jobs_max="${MOLECULE_JOBS:-2}"
log_dir="$root/.cache/molecule-logs"

if [[ ! -e .collections/ansible_collections/leanvibe/deploy ]]; then
    echo "molecule.sh: .collections/ansible_collections/leanvibe/deploy is missing; run \`make collection\` first." >&2
    exit 2
fi
if [[ ! "$jobs_max" =~ ^[1-9][0-9]*$ ]]; then
    echo "molecule.sh: MOLECULE_JOBS must be a whole number of at least 1, not '$jobs_max'." >&2
    exit 2
fi

if [[ $# -eq 0 ]]; then
    mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
else
    scenarios=("$@")
fi
mkdir -p "$log_dir"

run_scenario() {
    local scenario="$1" start=$SECONDS
    # shellcheck disable=SC2086  # MOLECULE_ARGS is a list of options on purpose
    if molecule test -s "$scenario" ${MOLECULE_ARGS:-} >"$log_dir/$scenario.log" 2>&1; then
        echo "molecule.sh: scenario $scenario passed in $((SECONDS - start)) s (log: $log_dir/$scenario.log)"
    else
        cat "$log_dir/$scenario.log"
        echo "molecule.sh: scenario $scenario FAILED after $((SECONDS - start)) s (log: $log_dir/$scenario.log)" >&2
        return 1
    fi
}

declare -A running=()  # pid -> scenario
failed=()
next=0
while (( next < ${#scenarios[@]} || ${#running[@]} > 0 )); do
    if (( ${#failed[@]} == 0 && next < ${#scenarios[@]} && ${#running[@]} < jobs_max )); then
        run_scenario "${scenarios[next]}" &
        running[$!]="${scenarios[next]}"
        next=$((next + 1))
        continue
    fi
    if (( ${#failed[@]} > 0 && ${#running[@]} == 0 )); then
        break
    fi
    finished=""
    if wait -n -p finished "${!running[@]}"; then
        :
    else
        failed+=("${running[$finished]}")
    fi
    unset "running[$finished]"
done

if (( ${#failed[@]} > 0 )); then
    echo "molecule.sh: failed: ${failed[*]}" >&2
    exit 1
fi
echo "molecule.sh: ${#scenarios[@]} scenario(s) passed"
