#!/usr/bin/env bash
# The benchmark client's own ceiling: `fluxctl bench jobs` against a trivial server (nginx over
# TLS and HTTP/2 answering every request at once with a finished job), so that a figure of
# `bench jobs` against fluxd can be read as the server's (when it is well below this) or the
# client's. Both share the machine, as they do in the other benchmarks; the client's CPU time
# per job says what share of the machine it needs at a given rate.
#
#   bash scripts/bench-client.sh                    # CLIENTS="64 512 1024", 10 s each
#   BIN_DIR=/path/to/release CLIENTS=1024 bash scripts/bench-client.sh
#
# Figures are printed as "RESULT  figure: value" lines (and appended to $FLUX_RESULTS).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CLIENTS="${CLIENTS:-64 512 1024}"
DURATION="${DURATION:-10s}"
WORKERS="${NGINX_WORKERS:-1}"
flux_need nginx
flux_build
flux_scratch DIR client
PORT=$(flux_free_port)

# A CA and a server certificate for 127.0.0.1 signed by it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
    -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$DIR/ext.cnf"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$DIR/ext.cnf" -out "$DIR/server.crt" 2>/dev/null

JOB='{"job_id":"j-bench","tenant":"default","command":{"shell":"true"},"timeout_secs":60,"max_attempts":1,"status":"succeeded","created_at":1,"updated_at":2,"started_at":1,"finished_at":2,"attempts":1,"exit_code":0,"submitted_by":"bench"}'
cat >"$DIR/nginx.conf" <<CONF
worker_processes $WORKERS;
daemon off;
pid $DIR/nginx.pid;
error_log $DIR/error.log;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $DIR/body;
    server {
        listen 127.0.0.1:$PORT ssl http2;
        ssl_certificate $DIR/server.crt;
        ssl_certificate_key $DIR/server.key;
        http2_max_concurrent_streams 200;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
        location / {
            default_type application/json;
            # As POST /v1/jobs/run answers: the job's place, and the ended job.
            add_header Location /v1/jobs/j-bench always;
            return 200 '$JOB';
        }
    }
}
CONF
nginx -c "$DIR/nginx.conf" -p "$DIR" &
FLUX_PIDS+=($!)
flux_wait_for 10 curl -sf --cacert "$DIR/ca.crt" -o /dev/null "https://127.0.0.1:$PORT/healthz" \
    || { echo "nginx did not come up" >&2; cat "$DIR/error.log" >&2; exit 1; }
export FLUX_CONFIG="$DIR/none.toml"
unset FLUX_TOKEN_FILE FLUX_CONTEXT
for c in $CLIENTS; do
    echo "==> fluxctl bench jobs --concurrency $c against nginx (a finished job for every request)"
    out="$DIR/client-$c.json"
    # The client's own CPU time (user + system, from bash's `time`), per job.
    TIMEFORMAT='%U %S'
    { time "$BIN/fluxctl" --server "https://127.0.0.1:$PORT" --ca "$DIR/ca.crt" --token bench \
        -o json bench jobs --count 100000000 --duration "$DURATION" --concurrency "$c" \
        >"$out" 2>"$DIR/client-$c.err" || true; } 2>"$DIR/time-$c.txt"
    cpu=$(awk '{ s = $1 + $2 } END { print s }' "$DIR/time-$c.txt")
    jq -c . "$out"
    per_job=$(jq -r --arg cpu "$cpu" '($cpu | tonumber) * 1e6 / ([.jobs, 1] | max) | round' "$out")
    flux_result "client ceiling: bench jobs against a trivial server, $c clients" \
        "$(flux_jobs_summary "$out"), client CPU $per_job µs per job" "CLIENTS=$c bash scripts/bench-client.sh"
done
