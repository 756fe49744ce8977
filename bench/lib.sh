# Shared by the bench scripts. Sourced, not run; corpus uses $MIRRORS and $TMP.

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# corpus NAME MIRROR PATH: the folder PATH of the mirrored repository, unpacked
# into $TMP/src/NAME, printed as NAME=DIR (the subtree alone: some mirrors lack
# large files elsewhere in the tree). No mirror: a skip line, nothing printed.
corpus() {
  local git=$MIRRORS/$2/repo
  if [ ! -d "$git" ]; then echo "# skip $1: no mirror at $git" >&2; return 0; fi
  mkdir -p "$TMP/src/$1"
  git --git-dir="$git" archive "HEAD:$3" | tar -x -C "$TMP/src/$1"
  echo "$1=$TMP/src/$1"
}
