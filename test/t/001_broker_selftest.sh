#!/usr/bin/env bash
# The test broker itself: its own self-test (test/broker/selftest.sh) against
# kcat as the independent client; it starts and stops a broker of its own.
set -euo pipefail
bash "$REPO_ROOT/test/broker/selftest.sh"
