#!/usr/bin/env bash
# Security audit: pip-audit over the installed (locked) environment, bandit over the product code (not tests).
# Findings explained below are accepted; any other fails the audit.
#   exit 0: no unexplained finding; 1: an unexplained finding; 2: no vulnerability feed answered, so the
#   dependencies could not be audited (pip-audit itself would report "No known vulnerabilities" and exit 0).
# Usage: tests/audit.sh            (VENV=.venv by default; PIP_AUDIT_SERVICE=pypi or osv)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${VENV:-.venv}/bin"
REPORTS="$(mktemp -d)"
trap 'rm -rf "$REPORTS"' EXIT

# The product's Python files: tracked or new, not ignored, tests left out.
mapfile -t SOURCES < <(git ls-files --cached --others --exclude-standard -- '*.py' ':!:tests/**')

"$BIN/pip-audit" --skip-editable --format json --output "$REPORTS/pip-audit.json" --progress-spinner off \
    --vulnerability-service "${PIP_AUDIT_SERVICE:-pypi}" 2>"$REPORTS/pip-audit.log" || true
"$BIN/bandit" --quiet --format json --output "$REPORTS/bandit.json" "${SOURCES[@]}" || true
for report in pip-audit bandit; do
    [ -s "$REPORTS/$report.json" ] || { echo "audit: $report did not run" >&2; cat "$REPORTS/pip-audit.log" >&2; exit 2; }
done

"$BIN/python" - "$REPORTS/pip-audit.json" "$REPORTS/bandit.json" <<'PYTHON'
"""Compare the findings with the explained ones; print each, and exit 0, 1 or 2 as the header says."""
import json
import linecache
import sys

# Vulnerability id -> why it does not affect this project.
EXPLAINED_VULNERABILITIES: dict[str, str] = {}

# (file, bandit test, flagged code without its comment) -> why it is not a risk.
EXPLAINED_CODE = {
    ("data/download.py", "B310", "with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:"):
        "the URL is DRYBEAN_DATA_URL (operator configuration read by train.py), never request input",
    ("serving/metrics.py", "B104", 'sock.bind(("0.0.0.0", port))'):
        "the metrics port, only when DRYBEANS_METRICS_PORT is set (Kubernetes scrapes the pod's IP); it needs the "
        "bearer token when one is set, and a NetworkPolicy admits only the monitoring namespace",
    ("db/store.py", "B608", "head = f\"INSERT INTO {PREDICTIONS.name} ({', '.join(ROW_COLUMNS)}) VALUES \""):
        "the bulk INSERT's head: the table's and columns' fixed names; the values are escaped by the driver (strings), "
        "formatted as an int (`:d`) or written by orjson (finite floats); test_security.py lists it",
    ("serving/token_file.py", "B105", 'API_TOKEN_NAME = "api-token"'):
        "the NAME under which DRYBEANS_API_TOKEN appears in the audit log, not a secret (tokens are stored hashed)",
    ("rollout/shadow.py", "B608",
     "head = f\"INSERT INTO {SHADOW_PREDICTIONS.name} ({', '.join(COLUMNS)}) VALUES \""):
        "the second opinions' bulk INSERT head: fixed table and column names; strings escaped by the driver, an int "
        "(`:d`), floats from the timer or NULL",
    ("model/figures.py", "B404", "import subprocess"):
        "train.py's figures are drawn by this same file run with this same interpreter",
    ("model/figures.py", "B603",
     "process = subprocess.Popen([sys.executable, __file__, str(output)], stdin=subprocess.PIPE)"):
        "no shell; the program is sys.executable running this file, the one argument train.py's --output",
}

pip_audit_path, bandit_path = sys.argv[1:]
unexplained = 0

dependencies = json.load(open(pip_audit_path))["dependencies"]
audited = [dependency for dependency in dependencies if "skip_reason" not in dependency]
for dependency in audited:
    for vulnerability in dependency["vulns"]:
        reason = EXPLAINED_VULNERABILITIES.get(vulnerability["id"])
        unexplained += reason is None
        print(f"pip-audit {'explained' if reason else 'FINDING'}: {dependency['name']} {dependency['version']} "
              f"{vulnerability['id']} (fixed in {', '.join(vulnerability['fix_versions']) or 'no release'}): "
              f"{reason or vulnerability.get('description', '')[:200]}")
print(f"pip-audit: {len(audited)} of {len(dependencies)} installed distributions audited")

for result in json.load(open(bandit_path))["results"]:
    path = result["filename"].removeprefix("./")
    code = linecache.getline(path, result["line_number"]).split("  #")[0].strip()
    reason = EXPLAINED_CODE.get((path, result["test_id"], code))
    unexplained += reason is None
    print(f"bandit {'explained' if reason else 'FINDING'}: {path}:{result['line_number']} {result['test_id']} "
          f"{result['issue_text']} -- {reason or code}")

if unexplained:
    sys.exit(f"audit: {unexplained} unexplained finding(s)")
if not audited:
    print("audit: no vulnerability feed answered, so the dependencies were NOT audited (PIP_AUDIT_SERVICE=pypi "
          "needs pypi.org/pypi/NAME/VERSION/json, osv needs api.osv.dev)", file=sys.stderr)
    sys.exit(2)
print("audit: no unexplained finding")
PYTHON
