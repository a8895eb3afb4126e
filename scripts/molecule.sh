#!/usr/bin/env bash
# Runs `molecule test` for the role scenarios under molecule/ (all of them, or the ones named), from the repo root,
# with the project's venv first on PATH and its ansible.cfg. Each scenario is timed; the first failure stops the run.
#   scripts/molecule.sh                 # every scenario under molecule/
#   scripts/molecule.sh nginx_lb        # one scenario
#   MOLECULE_ARGS="--destroy=never" scripts/molecule.sh app_slot   # keep it up to poke at it, then `molecule destroy -s app_slot`
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$root/ansible.cfg"

if [[ ! -e .collections/ansible_collections/leanvibe/deploy ]]; then
    echo "molecule.sh: .collections/ansible_collections/leanvibe/deploy is missing; run \`make collection\` first." >&2
    exit 2
fi

if [[ $# -eq 0 ]]; then
    mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
else
    scenarios=("$@")
fi

for scenario in "${scenarios[@]}"; do
    start=$SECONDS
    # shellcheck disable=SC2086  # MOLECULE_ARGS is a list of options on purpose
    molecule test -s "$scenario" ${MOLECULE_ARGS:-}
    echo "molecule.sh: scenario $scenario passed in $((SECONDS - start)) s"
done
