"""The compile cache in the pod: restore the artifacts of this key when they are complete, upload them after a miss.

Every replica runs the same two steps, so the pod template never depends on what S3 holds (a Hit found later
never rolls the pods):
- `restore-compile-cache` (init container, before the weights download): when the key's `complete` marker exists,
  sync the set it names into /var/cache/neuron (and the Hub weights into /models/weights); otherwise do nothing and
  let the engine compile. A failed sync leaves an empty cache (a compile), never part of one.
- `upload-compile-cache` (a sidecar): once the engine answers its health check, if no marker exists yet, sync this
  pod's /var/cache/neuron (and the weights) to `sets/<pod name>/` and write the marker last. Replicas that compiled
  at the same time each upload their own complete set and the last marker wins, so a restore never mixes two sets.

The scripts run in bash from the AWS CLI image; the S3 prefix (from the spec) and every other value arrive as
positional arguments or environment variables, always quoted, so nothing the user wrote is parsed by the shell.
"""

from __future__ import annotations

from neuroscale.render.artifacts import MARKER

# The Hub download skips when this file exists on the models volume: the weights came with the artifacts.
RESTORED_WEIGHTS_FLAG = ".neuroscale-weights-restored"
# Retries of one S3 sync before giving up (a restore then compiles; an upload tries again on the next pod).
SYNC_ATTEMPTS = 3

_SYNC = f"""s3_sync() {{
  for attempt in $(seq {SYNC_ATTEMPTS}); do
    aws s3 sync "$1" "$2" --only-show-errors --no-progress --exclude '.cache/*' --exclude '{RESTORED_WEIGHTS_FLAG}' \\
      && return 0
    echo "sync $1 -> $2 failed (attempt $attempt of {SYNC_ATTEMPTS})" >&2
    sleep 10
  done
  return 1
}}
empty_dir() {{ ( shopt -s dotglob nullglob; rm -rf -- "$1"/* ); }}
"""

# $1 prefix (s3://…/<key>/), $2 cache dir, $3 weights dir ('' when the weights are not part of the artifacts).
RESTORE_SCRIPT = _SYNC + f"""set -u
prefix=$1 cache=$2 weights=$3
if ! marker=$(aws s3 cp "${{prefix}}{MARKER}" - 2>/tmp/marker-error); then
  echo "no complete artifacts under $prefix: this replica compiles ($(tail -n 1 /tmp/marker-error))"
  exit 0
fi
set_name=$(printf '%s\\n' "$marker" | head -n 1)
case "$set_name" in
  sets/*/*|*..*) echo "marker names an unexpected set '$set_name': this replica compiles"; exit 0 ;;
  sets/?*) ;;
  *) echo "marker names an unexpected set '$set_name': this replica compiles"; exit 0 ;;
esac
if ! s3_sync "$prefix$set_name/neuron/" "$cache"; then
  echo "restoring $prefix$set_name failed: this replica compiles" >&2
  empty_dir "$cache"
  exit 0
fi
if [ -n "$weights" ]; then
  if s3_sync "$prefix$set_name/weights/" "$weights"; then
    touch "$weights/{RESTORED_WEIGHTS_FLAG}"
  else
    empty_dir "$weights"
  fi
fi
echo "restored $prefix$set_name"
"""

# $1 prefix, $2 cache dir, $3 weights dir or '', $4 engine port, $5 health path; POD_NAME and MANIFEST in the env.
UPLOAD_SCRIPT = _SYNC + f"""set -u
prefix=$1 cache=$2 weights=$3 port=$4 health=$5
# bash is PID 1 here and would ignore SIGTERM without a trap, holding the pod for its whole grace period; sleeping
# in the background and waiting on it lets the trap run at once. An upload cut short writes no marker.
trap 'exit 0' TERM
# bash's /dev/tcp in a subshell: the image has no curl, and a refused connection must not end the script.
healthy() {{
  ( exec 3<>"/dev/tcp/127.0.0.1/$port" \\
    && printf 'GET %s HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' "$health" >&3 \\
    && read -r -t 10 _ code _ <&3 && [ "$code" = 200 ] ) 2>/dev/null
}}
until healthy; do sleep 15 & wait $!; done
if aws s3 cp "${{prefix}}{MARKER}" - >/dev/null 2>&1; then
  echo "artifacts under $prefix are complete already: nothing to upload"
else
  set_name="sets/$POD_NAME"
  if s3_sync "$cache/" "$prefix$set_name/neuron/" \\
      && {{ [ -z "$weights" ] || s3_sync "$weights/" "$prefix$set_name/weights/"; }} \\
      && printf '%s\\n%s\\n' "$set_name" "$MANIFEST" | aws s3 cp - "${{prefix}}{MARKER}" --only-show-errors; then
    echo "uploaded the compiled artifacts to $prefix$set_name"
  else
    echo "uploading the compiled artifacts to $prefix failed: the next replica compiles and tries again" >&2
  fi
fi
while :; do sleep 3600 & wait $!; done
"""
