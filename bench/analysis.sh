#!/usr/bin/env bash
# Statement analysis: pg_deploy's verdicts next to squawk's (npm squawk-cli) on
# the same statements, and what analysis costs: per statement, and deploy.plan
# for 1,000 changes. Assumes the extension is installed (scripts/setup.sh).
# Writes bench/analysis-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
require_release_build
PORT=${PORT:-5496}
SQUAWK_VERSION=2.66.0
TOOLS=$ROOT/bench/.tools
OUT=$ROOT/bench/analysis-results.md

if [ ! -x "$TOOLS/node_modules/.bin/squawk" ]; then
  echo "==> npm install squawk-cli@$SQUAWK_VERSION"
  npm install --prefix "$TOOLS" --no-audit --no-fund --silent "squawk-cli@$SQUAWK_VERSION"
fi
SQUAWK=$TOOLS/node_modules/.bin/squawk

TMP=$(mktemp -d "${BENCH_TMPDIR:-/dev/shm}/pg_deploy_analysis.XXXXXX")
trap 'bash "$ROOT/scripts/cluster.sh" stop "$TMP" || true; rm -rf "$TMP"' EXIT
bash scripts/cluster.sh start "$TMP" "$PORT"
eval "$(bash scripts/cluster.sh env "$TMP")"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -At -d postgres)

echo "==> a 1,000,000-row table and a small one"
"${PSQL[@]}" <<'SQL'
CREATE EXTENSION pg_deploy;
CREATE TABLE big (id int PRIMARY KEY, v text, other int, note text);
INSERT INTO big SELECT g, md5(g::text), g, NULL FROM generate_series(1, 1000000) g;
CREATE TABLE small (id int PRIMARY KEY);
INSERT INTO small VALUES (1);
CREATE TYPE mood AS ENUM ('sad');
ANALYZE;
SQL

# One statement per line; each becomes a change of its own for pg_deploy and a
# file of its own for squawk.
cat >"$TMP/statements.txt" <<'SQL'
CREATE TABLE fresh (id bigint PRIMARY KEY, name text NOT NULL)
CREATE INDEX ON big (v)
CREATE INDEX CONCURRENTLY big_v ON big (v)
CREATE INDEX ON small (id)
ALTER TABLE big ADD COLUMN a int
ALTER TABLE big ADD COLUMN b timestamptz DEFAULT now()
ALTER TABLE big ADD COLUMN c float8 DEFAULT random()
ALTER TABLE big ADD COLUMN d uuid DEFAULT gen_random_uuid()
ALTER TABLE big ADD COLUMN e serial
ALTER TABLE big ADD COLUMN f int NOT NULL DEFAULT 0
ALTER TABLE big ALTER COLUMN other TYPE bigint
ALTER TABLE big ALTER COLUMN v TYPE varchar
ALTER TABLE big ALTER COLUMN note TYPE varchar(200)
ALTER TABLE big ALTER COLUMN v SET NOT NULL
ALTER TABLE big ADD CONSTRAINT big_other_fk FOREIGN KEY (other) REFERENCES small (id)
ALTER TABLE big ADD CONSTRAINT big_other_fk FOREIGN KEY (other) REFERENCES small (id) NOT VALID
ALTER TABLE big VALIDATE CONSTRAINT big_other_fk
ALTER TABLE big ADD CONSTRAINT big_other_pos CHECK (other > 0)
ALTER TABLE big ADD CONSTRAINT big_v_key UNIQUE (v)
ALTER TABLE big ADD CONSTRAINT big_v_key UNIQUE USING INDEX big_v
ALTER TABLE big RENAME COLUMN note TO remark
ALTER TABLE big RENAME TO huge
ALTER TABLE big DROP COLUMN note
DROP TABLE small
DROP TABLE IF EXISTS nothing_here
TRUNCATE big
DELETE FROM small
DELETE FROM small WHERE id = 1
UPDATE big SET note = 'x'
ALTER TYPE mood ADD VALUE 'happy'
VACUUM big
COMMIT
DISCARD ALL
CREATE TEMP TABLE scratch (id int)
COPY small FROM STDIN
SQL

echo "==> squawk $SQUAWK_VERSION and deploy.plan on $(wc -l <"$TMP/statements.txt") statements"
mkdir -p "$TMP/sq"
n=0
while IFS= read -r sql; do
  n=$((n + 1)); printf '%s;\n' "$sql" >"$TMP/sq/$(printf %03d $n).sql"
done <"$TMP/statements.txt"
# Timeouts: pg_deploy always sets lock_timeout and statement_timeout, so those two rules are left out.
"$SQUAWK" --reporter json --pg-version 15 --assume-in-transaction \
  --exclude require-lock-timeout,require-statement-timeout "$TMP"/sq/*.sql >"$TMP/squawk.json" || true

python3 - "$TMP/statements.txt" >"$TMP/manifest.json" <<'PY'
import json, sys
lines = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
print(json.dumps({"project": "analysis", "version": "1.0.0",
                  "changes": [{"id": f"{i + 1:03d}", "sql": sql} for i, sql in enumerate(lines)]}))
PY
"${PSQL[@]}" -v m="$(cat "$TMP/manifest.json")" <<'SQL' >"$TMP/plan.json"
SELECT deploy.plan(:'m'::jsonb, '{"execute": false}');
SQL

python3 - "$TMP/statements.txt" "$TMP/squawk.json" "$TMP/plan.json" >"$TMP/table.md" <<'PY'
import json, sys, os
lines = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
squawk = json.load(open(sys.argv[2]))
plan = json.load(open(sys.argv[3]))
rules = {}
for v in squawk:
    rules.setdefault(os.path.basename(v["file"]), set()).add(v["rule_name"])
print("| # | statement | squawk | pg_deploy |")
print("|---|---|---|---|")
for i, sql in enumerate(lines):
    change = plan["changes"][i]
    verdict = []
    for s in change.get("statements", []):
        if s.get("refusal"):
            verdict.append(f"**refused {s['refusal']['sqlstate']}**")
        for h in s.get("hazards", []):
            verdict.append(("**" + h["kind"] + "** (refused)") if h["refused"] else h["kind"] + " (small table: allowed)")
    found = ", ".join(sorted(rules.get(f"{i + 1:03d}.sql", []))) or "–"
    print(f"| {i + 1} | `{sql}` | {found} | {', '.join(verdict) or '–'} |")
PY

echo "==> cost: deploy.plan of 1,000 changes (2,001 statements)"
python3 - >"$TMP/m1000.json" <<'PY'
import json
changes = [{"id": "0000-schema", "sql": "CREATE SCHEMA bench;"}]
for i in range(1, 1001):
    changes.append({"id": f"{i:04d}-t_{i}", "sql":
        f"CREATE TABLE bench.t_{i} (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz DEFAULT now());\n"
        f"CREATE INDEX ON bench.t_{i} (created_at);"})
print(json.dumps({"project": "bench", "version": "1.0.0", "changes": changes}))
PY
# Server-side milliseconds of deploy.plan, as the report's own duration_ms, 5 runs.
plan_ms() {
  for _ in 1 2 3 4 5; do
    psql -X -q -At -d postgres <<SQL
\set m \`cat $TMP/m1000.json\`
SELECT deploy.plan(:'m'::jsonb, '{"execute": $1}')->>'duration_ms';
SQL
  done | median
}
plan_analyse=$(plan_ms false)
plan_execute=$(plan_ms true)
per_statement=$(python3 -c "print(f'{$plan_analyse * 1000 / 2001:.0f}')")
squawk_ms=$( { awk 'FNR == 1 && NR > 1 {print ";"} {print}' >/dev/null; } </dev/null; \
  python3 -c "import json; m = json.load(open('$TMP/m1000.json')); open('$TMP/all.sql', 'w').write(';\n'.join(c['sql'] for c in m['changes']) + ';\n')"; \
  t0=$(date +%s%N); "$SQUAWK" --reporter json "$TMP/all.sql" >/dev/null || true; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )) )

{
  echo "# Statement analysis: pg_deploy and squawk"
  echo
  echo "Generated by \`bash bench/analysis.sh\` on $(date -u +%F): PostgreSQL $(psql -X -At -d postgres -c 'SHOW server_version'),"
  echo "squawk-cli $SQUAWK_VERSION (\`--assume-in-transaction --pg-version 15\`, without require-lock-timeout and"
  echo "require-statement-timeout), table \`big\` of 1,000,000 rows, \`small\` of 1 row, pg_deploy's default thresholds."
  echo
  cat "$TMP/table.md"
  echo
  echo "## Cost"
  echo
  echo "| measure | figure |"
  echo "|---|---:|"
  echo "| deploy.plan, 1,000 changes / 2,001 statements, analysis only (\`execute: false\`), median of 5 | $plan_analyse ms |"
  echo "| analysis per statement (parse, classify, catalog lookups) | $per_statement µs |"
  echo "| deploy.plan, 1,000 changes, analysis + trial run rolled back (\`execute: true\`), median of 5 | $plan_execute ms |"
  echo "| squawk on the same 2,001 statements (one process, wall) | $squawk_ms ms |"
} >"$OUT"
cat "$OUT"
