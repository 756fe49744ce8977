"""The benchmarks' generated deployment: N changes, each a CREATE TABLE with a
primary key and a default plus a CREATE INDEX, after a CREATE SCHEMA.
Usage: python3 bench/ddl_changes.py N MANIFEST_JSON [PLAIN_SQL]
writes the manifest (and the same statements as one SQL file for psql -1)."""
import json
import sys

n, manifest_path = int(sys.argv[1]), sys.argv[2]
width = max(4, len(str(n)))
changes = [{"id": "0" * width + "-schema", "sql": "CREATE SCHEMA bench;"}]
for i in range(1, n + 1):
    changes.append({"id": f"{i:0{width}d}-t_{i}", "sql":
        f"CREATE TABLE bench.t_{i} (id bigint PRIMARY KEY, name text NOT NULL, "
        f"created_at timestamptz DEFAULT now());\n"
        f"CREATE INDEX ON bench.t_{i} (created_at);"})
with open(manifest_path, "w") as f:
    json.dump({"project": "bench", "version": "1.0.0", "changes": changes}, f)
if len(sys.argv) > 3:
    with open(sys.argv[3], "w") as f:
        f.write("\n".join(c["sql"] for c in changes) + "\n")
