#!/usr/bin/env bash
# `ray up` + `ray submit` with a local-provider copy of ray_cluster.yaml over loopback SSH
# (docs/cluster.md says what this checks and what it cannot). Run as root from the repository
# root, after `make install`:  bash docs/cluster-loopback.sh
#
# Everything lives under $WORK (default /tmp/hbc): an unprivileged user `hbray` whose home is
# there plays the head node, an sshd on 127.0.0.1:22 lets `ray up` reach it, the client's HOME
# and Ray temp folder are there too. Nothing runs `ray stop` or `ray down` (both stop every Ray
# process of the user on the machine); the script stops what it started by process id, and
# removes the user and $WORK at the end (KEEP=1 keeps them).
set -euo pipefail

REPO=$(pwd)
WORK=${WORK:-/tmp/hbc}
CLUSTER_FILE=${CLUSTER_FILE:-$REPO/ray_cluster.yaml}  # another cluster file, e.g. an older one
SCRIPT=${SCRIPT:-studies/ablation.py}
VENV_SITE=$("$REPO/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
HEAD_HOME=$WORK/home
USER_NAME=hbray
free_port() { "$REPO/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# `ray up` leaves an ssh ControlPath folder and a config cache in /tmp: removed at the end.
SSH_CONTROL_BEFORE=$(ls -d /tmp/ray_ssh_* 2>/dev/null || true)

cleanup() {
  set +e
  for dir in /tmp/ray_ssh_*; do
    case " $SSH_CONTROL_BEFORE " in *" $dir "*) ;; *) rm -rf "$dir" ;; esac
  done
  grep -l "hbc-loopback" /tmp/ray-config-* 2>/dev/null | xargs -r rm -f
  if [ -n "${SSHD_PID:-}" ]; then kill "$SSHD_PID"; fi
  for pid in $(ps -u "$USER_NAME" -o pid= 2>/dev/null); do kill -9 "$pid"; done  # the head's Ray, by id
  for _ in $(seq 20); do ps -u "$USER_NAME" -o pid= >/dev/null 2>&1 || break; sleep 0.5; done
  if [ "${KEEP:-0}" != 1 ]; then
    userdel "$USER_NAME" 2>/dev/null
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

if ss -ltn | grep -q '127.0.0.1:22 \|0.0.0.0:22 \|\*:22 '; then echo "port 22 is taken" >&2; exit 1; fi
rm -rf "$WORK"; mkdir -p "$WORK/sshd" "$WORK/client/home" "$WORK/client/tmp" /run/sshd
chmod 755 "$WORK"

# The head: an unprivileged user, Debian's python3.11 with this checkout's installed dependencies
# on its path (a .pth: their own .pth files, the editable install's finder among them, stay off),
# and `ray` on PATH. The cluster file's setup_commands install heartbeatai itself, non-editable.
useradd --home-dir "$HEAD_HOME" --create-home --shell /bin/bash "$USER_NAME"
usermod -p "*" "$USER_NAME"  # no password, yet not "locked": sshd then takes its key
su "$USER_NAME" -c "/usr/bin/python3.11 -m venv --without-pip $HEAD_HOME/venv"
echo "$VENV_SITE" > "$HEAD_HOME/venv/lib/python3.11/site-packages/checkout-deps.pth"
printf '#!%s\nfrom ray.scripts.scripts import main\nmain()\n' "$HEAD_HOME/venv/bin/python" > "$HEAD_HOME/venv/bin/ray"
chmod 755 "$HEAD_HOME/venv/bin/ray"
cat > "$HEAD_HOME/.bashrc" <<EOF
export PATH=$HEAD_HOME/venv/bin:\$PATH
export RAY_TMPDIR=$HEAD_HOME            # Ray's files, ray_current_cluster included, in its own folder
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
EOF
ssh-keygen -q -t ed25519 -N '' -f "$WORK/key"
mkdir -p "$HEAD_HOME/.ssh" && cp "$WORK/key.pub" "$HEAD_HOME/.ssh/authorized_keys"
chown -R "$USER_NAME:$USER_NAME" "$HEAD_HOME"
chmod 700 "$HEAD_HOME/.ssh" && chmod 600 "$HEAD_HOME/.ssh/authorized_keys"

# sshd on loopback only, key authentication for that user only.
ssh-keygen -q -t ed25519 -N '' -f "$WORK/sshd/host_key"
cat > "$WORK/sshd/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port 22
HostKey $WORK/sshd/host_key
PidFile $WORK/sshd/sshd.pid
AllowUsers $USER_NAME
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
EOF
/usr/sbin/sshd -D -f "$WORK/sshd/sshd_config" -E "$WORK/sshd/sshd.log" &
SSHD_PID=$!
sleep 1
ssh -q -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i "$WORK/key" "$USER_NAME@127.0.0.1" true

# The local-provider copy: the shipped file's mounts, excludes and install step; its AWS parts
# (provider, node types, EFS, apt) replaced; the head started without `ray stop`, on free ports.
GCS=$(free_port); DASH=$(free_port); CLIENT=$(free_port)
"$REPO/.venv/bin/python" - "$CLUSTER_FILE" "$WORK/cluster-local.yaml" <<EOF
import sys, yaml
shipped = yaml.safe_load(open(sys.argv[1]))
install = [c for c in shipped["setup_commands"] if "pip install" in c and "constraints.txt" in c]
assert len(install) == 1, install
local = {
    "cluster_name": "hbc-loopback",
    "provider": {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []},
    "auth": {"ssh_user": "$USER_NAME", "ssh_private_key": "$WORK/key"},
    "file_mounts": shipped["file_mounts"],
    "rsync_exclude": shipped["rsync_exclude"],
    # Dependencies come through the .pth above (no downloads here): the shipped line, less them.
    "setup_commands": [install[0].replace("pip install -q", "pip install -q --no-deps --no-build-isolation")],
    "head_start_ray_commands": [
        "ray start --head --node-ip-address=127.0.0.1 --port=$GCS --dashboard-host=127.0.0.1 "
        "--dashboard-port=$DASH --ray-client-server-port=$CLIENT --temp-dir=$HEAD_HOME/ray "
        "--num-cpus=2 --autoscaling-config=~/ray_bootstrap_config.yaml"],
    "worker_start_ray_commands": [],
}
yaml.safe_dump(local, open(sys.argv[2], "w"), sort_keys=False)
EOF

export HOME=$WORK/client/home RAY_TMPDIR=$WORK/client/tmp RAY_USAGE_STATS_ENABLED=0
make -s commit-stamp
STAMP=$(cat platform/heartbeatai/_build_commit.txt)
start=$(date +%s)
"$REPO/.venv/bin/ray" up -y --no-config-cache "$WORK/cluster-local.yaml" 2>&1 | tee "$WORK/ray-up.log" | tail -5
echo "ray up: $(( $(date +%s) - start )) s"
start=$(date +%s)
"$REPO/.venv/bin/ray" submit "$WORK/cluster-local.yaml" "$SCRIPT" -- --config smoke \
  --storage "$HEAD_HOME/runs" 2>&1 | tee "$WORK/ray-submit.log" | tail -8
echo "ray submit: $(( $(date +%s) - start )) s"

# What the study recorded: tested arms, and the stamped commit in the provenance of its run files.
# (The head's environment first: `ray.init(address="auto")` would join any GCS that `ps` shows on
# this shared machine; ensure_ray joins the head's recorded, answering address.)
su "$USER_NAME" -c ". $HEAD_HOME/.bashrc && cd $HEAD_HOME && $HEAD_HOME/venv/bin/python -c \"
from heartbeatai.results import ResultsStore
from heartbeatai.analysis.consensus import parse_run_file
store = ResultsStore('$HEAD_HOME/runs')
tested = store.read('smoke', 'fold_metrics', filters={'split': 'test', 'metric': 'macro_auroc'})
print('tested arms:', sorted(set(tested['arm'])))
commits = {parse_run_file(t).provenance.git_commit for t in store.read('smoke', 'best_configs')['run_file']}
print('provenance git_commit:', commits, 'stamp:', '$STAMP', 'match:', commits == {'$STAMP'})
import heartbeatai; print('heartbeatai imported from', heartbeatai.__file__)
from heartbeatai.study.ray_start import cluster_address, ensure_ray
print('joins', cluster_address()); ensure_ray()
from heartbeatai.study.resources import cluster_capacity, launcher_config_path, live_autoscaler_capacity
import ray; print('the live monitor reads', launcher_config_path(ray.get_runtime_context().gcs_address))
print('live autoscaler bounds:', live_autoscaler_capacity(), '; cluster capacity:', cluster_capacity())
from ray._private.state import state; print('GCS cluster config:', state.get_cluster_config())
\""
PIDS=$(ps -u "$USER_NAME" -o pid= | xargs | tr ' ' '|')
echo "the head's processes listen on: $(ss -ltnp | grep -E "pid=($PIDS)," | awk '{print $4}' | sort -u | xargs)"
