# shellcheck shell=bash disable=SC2034  # variables are for the scripts that source this
# Shared by scripts/objstore-up and scripts/objstore-down; sourced, never run.
#
# The pid bookkeeping (a PID with its start time and boot id) is e2e-common.sh's; only where state
# lives differs, so the two harnesses never see each other's processes.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../e2e-common.sh
source "$here/e2e-common.sh"

STATE=${CACHEPORT_OBJSTORE_STATE:-/var/tmp/cacheport-objstore}
PREFIX=${CACHEPORT_E2E_PREFIX:-/opt/cacheport-e2e}
INSTALL=$PREFIX/objstore
RUN_DIR=$STATE/run
LOG_DIR=$STATE/logs

MOTO_SPEC=${CACHEPORT_OBJSTORE_MOTO:-moto[server]==5.2.5}
# Azurite 3.37 needs Node >= 22; npm's `node` package brings one without touching the system's.
AZURITE_SPEC=${CACHEPORT_OBJSTORE_AZURITE:-azurite@3.37.0}
NODE_SPEC=${CACHEPORT_OBJSTORE_NODE:-node@22.23.3}

BUCKET=cacheport-e2e
REGION=us-east-1
AZ_ACCOUNT=devstoreaccount1
# Azurite's documented development key: public, and accepted by nothing but Azurite.
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
AZ_CONTAINER=cacheport-e2e
